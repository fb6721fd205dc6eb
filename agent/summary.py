"""Print a run's agent trajectory as a table: `python -m agent.summary experiments/<name>`."""
from __future__ import annotations

import argparse
from pathlib import Path

from .decision_log import read_records


def format_table(records: list[dict]) -> str:
    if not records:
        return '(no stage records yet)'
    experts = list(records[0].get('mean_scores', {}))
    arrows = {'lower': '↓', 'higher': '↑'}
    directions = records[0].get('directions', {})
    losses = list(records[0]['weights_after'])
    header = ['stage', 'iter'] + [f'{e}{arrows.get(directions.get(e), "")}' for e in experts] \
        + [f'w_{n}' for n in losses] + ['policy', 'note']
    rows = []
    for r in records:
        scores = [r['mean_scores'].get(e) for e in experts]
        rows.append([str(r['stage']), str(r['iteration'])]
                    + [f'{s:.4g}' if isinstance(s, (int, float)) else 'n/a' for s in scores]
                    + [f'{r["weights_after"][n]:.4g}' for n in losses]
                    + [r.get('policy', ''), ('kept: ' + r['fallback']) if r.get('fallback') else ''])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('experiment', type=Path, help='experiments/<name> folder or its decisions.jsonl')
    args = parser.parse_args(argv)
    path = args.experiment if args.experiment.suffix == '.jsonl' else args.experiment / 'agent' / 'decisions.jsonl'
    if not path.exists():
        raise SystemExit(f'no decision log at {path}')
    print(format_table(list(read_records(path))))


if __name__ == '__main__':
    main()
