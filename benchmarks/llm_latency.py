"""What one llm-policy decision costs with the embedded model in-process (llama.cpp, SmolLM2-135M).

    python benchmarks/llm_latency.py                       # the demo's shape, explicit and paper prompts
    python benchmarks/llm_latency.py --stages 1 10 --no-reuse --per-image false
    python benchmarks/llm_latency.py --engine --threads 1 2 [--beside-training]   # tokens/s, repeated

The demo's shape: 3 losses (L1, SSIM, GAN), experts NIQE and PSNR, 23 validation images, a stage
every 50 iterations. The history is synthetic (scores drift, weights move ~20 % a stage); what is
measured is the engine's work, which depends on the prompt's length and the answer's, not on the
values. Per boundary it prints the prompt tokens, those evaluated (the rest came from llama.cpp's KV
cache) and those generated, and the decision's wall time. `--no-reuse` empties the cache before
every request, which is what an engine without prefix reuse evaluates.

`--engine` measures the engine alone: prompt and generation (under the grammar) tokens per second,
`--repeats` times per thread count, median and range; `--beside-training` runs it while a second
process trains a small network with torch's default threads (what an asynchronous decision meets).
OpenMP's settings (OMP_WAIT_POLICY) are read once per process, when torch or llama.cpp first loads
libgomp: set them in the environment of this script, not inside it.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import ExpertInfo, History, StageRecord, build_policy  # noqa: E402
from agent.policies.llm_policy import LLM_DEFAULTS  # noqa: E402

LOSSES = ['L1', 'SSIM', 'GAN']
INITIAL = [1.0, 0.5, 0.01]
EXPERTS = [ExpertInfo('NIQE', lower_better=True), ExpertInfo('PSNR', weight=0.0)]


def demo_history(stages: int, images: int, seed: int = 0) -> History:
    rng = random.Random(seed)
    weights = dict(zip(LOSSES, INITIAL))
    niqe = [rng.uniform(4, 9) for _ in range(images)]
    psnr = [rng.uniform(20, 30) for _ in range(images)]
    records = []
    for k in range(stages + 1):
        records.append(
            StageRecord(
                k,
                50 * k,
                dict(weights),
                {
                    'NIQE': [v * rng.uniform(0.9, 1.05) for v in niqe],
                    'PSNR': [v + rng.uniform(-0.3, 0.2) for v in psnr],
                },
                experts=EXPERTS,
            )
        )
        weights = {n: round(v * rng.uniform(0.8, 1.25), 5) for n, v in weights.items()}
    return History(records)


def measure(args, prompt: str, reuse: bool) -> list[dict]:
    opt = {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': 'embedded',
        'structured_output': 'grammar',
        'prompt': prompt,
        'per_image': args.per_image,
        'n_threads': args.threads,
        'n_ctx': args.n_ctx,
        'max_tokens': 256,
        'max_thoughts': args.max_thoughts,
        'max_concurrency': 1,
        'reprompt': False,
    }
    policy = build_policy(opt, LOSSES, INITIAL, EXPERTS, seed=0, task='image super-resolution (x4)')
    if not reuse:
        chat = policy.client.chat

        def chat_from_scratch(*a, **k):
            policy.client._llm.reset()  # the KV cache is emptied: every prompt token is evaluated
            return chat(*a, **k)

        policy.client.chat = chat_from_scratch
    rows = []
    try:
        for stage in args.stages:
            start = time.perf_counter()
            decision = policy.decide(demo_history(stage, args.images))
            wall = time.perf_counter() - start
            t, c = decision.info.get('tokens', {}), decision.info.get('compliance', {})
            rows.append(
                {
                    'prompt': prompt,
                    'reuse': reuse,
                    'stage': stage,
                    'prompts': c.get('prompts'),
                    'valid': c.get('valid'),
                    **t,
                    'wall_s': wall,
                    'fallback': decision.fallback,
                }
            )
            print(
                f'{prompt:8s} {"reuse" if reuse else "fresh":5s} stage {stage:2d}: {c.get("prompts")} prompts, '
                f'{t.get("prompt")} prompt tokens, {t.get("evaluated")} evaluated, {t.get("generated")} generated, '
                f'{wall:.1f} s ({c.get("valid")} usable; repeats example {c.get("repeats_example")}, '
                f'current {c.get("repeats_current")})',
                flush=True,
            )
    finally:
        policy.close()
    return rows


TRAINING_LOAD = """
import torch, torch.nn as nn
net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 32, 3, padding=1), nn.GELU(),
                    nn.Conv2d(32, 48, 3, padding=1), nn.PixelShuffle(4))
opt = torch.optim.Adam(net.parameters())
x, y = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 128, 128)
print('ready', flush=True)
while True:
    loss = (net(x) - y).abs().mean(); opt.zero_grad(); loss.backward(); opt.step()
"""


def engine_speed(threads: int, repeats: int) -> tuple[list[float], list[float]]:
    """Prompt and generation tokens per second of the embedded model, `repeats` times."""
    from llama_cpp import Llama, LlamaGrammar
    from agent.llm.client import embedded_model_path
    from agent.llm.structured import weights_gbnf

    llm = Llama(
        model_path=str(embedded_model_path()), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    grammar = LlamaGrammar.from_string(weights_gbnf(LOSSES, max_thoughts=400), verbose=False)
    prompt = llm.tokenize(
        ('Step 50 weights is 1.0:0.5:0.01. The NIQE score of the image at this step is 5.4321. ' * 30).encode()
    )[:500]
    prompt_speed, generate_speed = [], []
    for k in range(repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prompt_speed.append(len(prompt) / (time.perf_counter() - start))
        start = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=64, temperature=0.6, seed=k, grammar=grammar)
        generate_speed.append(out['usage']['completion_tokens'] / (time.perf_counter() - start))
    llm.close()
    return prompt_speed, generate_speed


def spread(values: list[float]) -> str:
    return f'{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]'


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--stages', type=int, nargs='+', default=[1, 5, 10], help='boundaries to decide at')
    ap.add_argument('--images', type=int, default=23)
    ap.add_argument('--prompts', nargs='+', default=['explicit', 'paper'])
    ap.add_argument('--per-image', type=lambda s: s.lower() in ('1', 'true', 'yes'), default=True)
    ap.add_argument('--threads', type=int, nargs='+', default=[1], help='n_threads (--engine: each of them)')
    ap.add_argument('--engine', action='store_true', help='tokens per second of the engine alone')
    ap.add_argument('--beside-training', action='store_true', help='--engine while another process trains')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--n-ctx', type=int, default=4096)
    ap.add_argument('--max-thoughts', type=int, default=LLM_DEFAULTS['max_thoughts'])
    ap.add_argument('--no-reuse', action='store_true', help='also measure with the KV cache emptied per request')
    args = ap.parse_args(argv)
    if args.engine:
        load = (
            subprocess.Popen([sys.executable, '-c', TRAINING_LOAD], stdout=subprocess.PIPE, text=True)
            if args.beside_training
            else None
        )
        try:
            if load:
                load.stdout.readline()  # torch is up and training
            for threads in args.threads:
                p, g = engine_speed(threads, args.repeats)
                print(
                    f'engine: n_threads {threads}{" beside training" if load else ""}, '
                    f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "(unset)")}: prompt {spread(p)} tok/s, '
                    f'generation (grammar) {spread(g)} tok/s, median [range] of {args.repeats}',
                    flush=True,
                )
        finally:
            if load:
                load.kill()
        return
    args.threads = args.threads[0]
    print(
        f'llm_latency: {args.images} images, per_image {args.per_image}, n_threads {args.threads}, '
        f'max_thoughts {args.max_thoughts}, OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "(unset)")}'
    )
    for prompt in args.prompts:
        for reuse in [True, False] if args.no_reuse else [True]:
            measure(args, prompt, reuse)


if __name__ == '__main__':
    main()
