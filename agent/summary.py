"""Print a run's agent trajectory as a table: `python -m agent.summary experiments/<name>`."""
from __future__ import annotations

import argparse
from pathlib import Path

from .decision_log import log_path, read_records
from .record import StageRecord


def format_table(records: list[StageRecord]) -> str:
    if not records:
        return '(no stage records yet)'
    first = records[0]
    experts = list(first.scores)
    arrows = {e.name: e.arrow for e in first.experts}
    losses = list(first.weights_after or first.weights_before)
    header = ['stage', 'iter'] + [f'{e}{arrows.get(e, "")}' for e in experts] \
        + [f'w_{n}' for n in losses] + ['policy', 'note']
    rows = []
    for r in records:
        means = r.mean_scores()
        after = r.weights_after or r.weights_before
        rows.append([str(r.stage), str(r.iteration)]
                    + [f'{means[e]:.4g}' if means.get(e) is not None else 'n/a' for e in experts]
                    + [f'{after[n]:.4g}' for n in losses]
                    + [r.policy, ('kept: ' + r.fallback) if r.fallback else ''])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def time_line(records: list[StageRecord]) -> str:
    """What the agent cost the run (paper Table 12's "LLM Reasoning" and "Feedback" columns)."""
    feedback = [r.eval_s for r in records if r.eval_s is not None]
    reasoning = [r.latency_s for r in records if r.decided and r.latency_s is not None]
    return (f'agent time: feedback (restoring + experts) {sum(feedback) / 60:.2f} min over {len(feedback)} '
            f'boundaries; policy (LLM reasoning) {sum(reasoning) / 60:.2f} min over {len(reasoning)} decisions')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('experiment', type=Path, help='experiments/<name> folder or its decisions.jsonl')
    args = parser.parse_args(argv)
    path = log_path(args.experiment)
    if not path.exists():
        raise SystemExit(f'no decision log at {path}')
    records = list(read_records(path))
    print(format_table(records))
    if records:
        print(time_line(records))


if __name__ == '__main__':
    main()
