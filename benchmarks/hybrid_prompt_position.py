"""Where the hybrid policy's optimizer section goes, and what the embedded model does with it.

    OMP_WAIT_POLICY=passive python benchmarks/hybrid_prompt_position.py [--boundaries 4] [--answers]

Runs the hybrid policy with the embedded SmolLM2-135M (in-process llama.cpp, grammar, one thread) on
a synthetic run -- each stage trained with the weights decided before it, NIQE falling with training
and rising as the GAN weight leaves 0.02 (tests/test_hybrid_policy.py's history) -- once with
`state_position: last` and once with `shared`, and prints per boundary the verdict, the per-image
verdicts, how many answers copied the current weights, and the prompt tokens (all, evaluated) and
the wall time. One seed: it shows what the model tends to copy, not a distribution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'tests')]

from agent import build_policy  # noqa: E402
from test_hybrid_policy import EMBEDDED, EXPERTS, INIT, N, trajectory  # noqa: E402


def run(position: str, boundaries: int, answers: bool) -> None:
    opt = {'type': 'hybrid', **EMBEDDED, 'max_tokens': 120, 'max_thoughts': 60, 'reprompt': False}
    policy = build_policy({**opt, 'state_position': position}, N, INIT, EXPERTS, task='image super-resolution (x4)')
    try:
        started = time.monotonic()
        decisions, records = trajectory(policy, boundaries)
        took = time.monotonic() - started
    finally:
        policy.close()
    print(f'state_position: {position}  ({took:.1f} s for {boundaries} boundaries of 3 images)')
    for d, record in zip(decisions, records[1:]):
        copied = d.info['compliance']['repeats_current']
        t = d.info['tokens']
        print(
            f'  stage {record.stage}: {d.info["verdict"]:<9} per image {d.info["verdicts"]}, '
            f'copied the current weights {copied}, tokens {t["prompt"]} ({t["evaluated"]} evaluated)'
        )
        if answers:
            print(f'    current {record.weights}, proposal {d.info["optimizer_proposal"]}')
            for a in d.answers:
                print(f'    {(a["text"] or a["error"] or "").splitlines()[0]}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--boundaries', type=int, default=4)
    parser.add_argument('--answers', action='store_true', help="print each answer's Weights line")
    args = parser.parse_args()
    for position in ('last', 'shared'):
        run(position, args.boundaries, args.answers)


if __name__ == '__main__':
    main()
