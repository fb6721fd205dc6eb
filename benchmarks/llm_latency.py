"""What one llm-policy decision costs with the embedded model in-process (llama.cpp, SmolLM2-135M).

    python benchmarks/llm_latency.py                       # the demo's shape, explicit and paper prompts
    python benchmarks/llm_latency.py --stages 1 10 --no-reuse --per-image false

The demo's shape: 3 losses (L1, SSIM, GAN), experts NIQE and PSNR, 23 validation images, a stage
every 50 iterations. The history is synthetic (scores drift, weights move ~20 % a stage); what is
measured is the engine's work, which depends on the prompt's length and the answer's, not on the
values. Per boundary it prints the prompt tokens, those evaluated (the rest came from llama.cpp's KV
cache) and those generated, and the decision's wall time. `--no-reuse` empties the cache before
every request, which is what an engine without prefix reuse evaluates.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import ExpertInfo, History, StageRecord, build_policy  # noqa: E402

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
        records.append(StageRecord(k, 50 * k, dict(weights), {
            'NIQE': [v * rng.uniform(0.9, 1.05) for v in niqe], 'PSNR': [v + rng.uniform(-0.3, 0.2) for v in psnr]},
            experts=EXPERTS))
        weights = {n: round(v * rng.uniform(0.8, 1.25), 5) for n, v in weights.items()}
    return History(records)


def measure(args, prompt: str, reuse: bool) -> list[dict]:
    opt = {'type': 'llm', 'backend': 'llamacpp', 'model_path': 'embedded', 'structured_output': 'grammar',
           'prompt': prompt, 'per_image': args.per_image, 'n_threads': args.threads, 'n_ctx': args.n_ctx,
           'max_tokens': 256, 'max_thoughts': args.max_thoughts, 'max_concurrency': 1, 'reprompt': False}
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
            rows.append({'prompt': prompt, 'reuse': reuse, 'stage': stage, 'prompts': c.get('prompts'),
                         'valid': c.get('valid'), **t, 'wall_s': wall, 'fallback': decision.fallback})
            print(f"{prompt:8s} {'reuse' if reuse else 'fresh':5s} stage {stage:2d}: {c.get('prompts')} prompts, "
                  f"{t.get('prompt')} prompt tokens, {t.get('evaluated')} evaluated, {t.get('generated')} generated, "
                  f"{wall:.1f} s ({c.get('valid')} usable; repeats example {c.get('repeats_example')}, "
                  f"current {c.get('repeats_current')})", flush=True)
    finally:
        policy.close()
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--stages', type=int, nargs='+', default=[1, 5, 10], help='boundaries to decide at')
    ap.add_argument('--images', type=int, default=23)
    ap.add_argument('--prompts', nargs='+', default=['explicit', 'paper'])
    ap.add_argument('--per-image', type=lambda s: s.lower() in ('1', 'true', 'yes'), default=True)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--n-ctx', type=int, default=4096)
    ap.add_argument('--max-thoughts', type=int, default=160)
    ap.add_argument('--no-reuse', action='store_true', help='also measure with the KV cache emptied per request')
    args = ap.parse_args(argv)
    print(f"llm_latency: {args.images} images, per_image {args.per_image}, n_threads {args.threads}, "
          f"max_thoughts {args.max_thoughts}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    for prompt in args.prompts:
        for reuse in ([True, False] if args.no_reuse else [True]):
            measure(args, prompt, reuse)


if __name__ == '__main__':
    main()
