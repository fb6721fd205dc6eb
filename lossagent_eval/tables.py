"""Benchmark tables in the paper's layout: metric blocks x method rows x dataset columns + Avg.

Input is plain data, so the table can be rebuilt from a CSV or tested without any network:
`scores[metric][row][dataset] -> float or None` (row = method name, or the reference row),
`directions[metric] -> True when lower is better`. Per metric and column (Avg included) the best
method value is bold; the reference row (GT) is shown but never counted as best, as in the paper.
"""

import csv
import math

REF_ROW = 'GT (Ref.)'
AVG = 'Avg.'


def row_average(values: list[float | None]) -> float | None:
    """Mean over the datasets that have a value (the paper's Avg. column)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


class BenchmarkTable:
    def __init__(
        self,
        metrics: list[str],
        rows: list[str],
        datasets: list[str],
        directions: dict[str, bool],
        labels: dict[str, str] | None = None,
        decimals: dict[str, int] | None = None,
    ):
        self.metrics, self.rows, self.datasets = list(metrics), list(rows), list(datasets)
        self.directions = directions
        self.labels = labels or {}
        self.decimals = decimals or {}
        self.scores: dict[str, dict[str, dict[str, float | None]]] = {
            m: {r: {d: None for d in self.datasets} for r in self.rows} for m in self.metrics
        }

    def set(self, metric, row, dataset, value):
        self.scores[metric][row][dataset] = None if value is None else float(value)

    def value(self, metric, row, column):
        if column == AVG:
            return row_average([self.scores[metric][row][d] for d in self.datasets])
        return self.scores[metric][row][column]

    def metric_rows(self, metric):
        """Rows shown for a metric: the reference row only when it has at least one value."""
        return [r for r in self.rows if r != REF_ROW or any(v is not None for v in self.scores[metric][r].values())]

    def best(self, metric, column):
        """Best method value of a column (reference row excluded), or None."""
        values = [self.value(metric, r, column) for r in self.rows if r != REF_ROW]
        values = [v for v in values if v is not None]
        if not values:
            return None
        return min(values) if self.directions[metric] else max(values)

    def header(self, metric):
        """Metric label with the paper's arrow: lower is better -> down arrow."""
        return f'{self.labels.get(metric, metric.upper())}{"↓" if self.directions[metric] else "↑"}'

    def _fmt(self, metric, v):
        return '–' if v is None else f'{v:.{self.decimals.get(metric, 4)}f}'

    def to_markdown(self, title: str = '') -> str:
        columns = self.datasets + [AVG]
        lines = [f'## {title}', ''] if title else []
        lines.append('| Metrics | Methods | ' + ' | '.join(columns) + ' |')
        lines.append('|---|---|' + '---:|' * len(columns))
        for metric in self.metrics:
            for i, row in enumerate(self.metric_rows(metric)):
                cells = []
                for col in columns:
                    v = self.value(metric, row, col)
                    text = self._fmt(metric, v)
                    best = self.best(metric, col)
                    # compare rounded values, so ties in the printed digits are all bold
                    if row != REF_ROW and v is not None and best is not None and text == self._fmt(metric, best):
                        text = f'**{text}**'
                    cells.append(text)
                label = self.header(metric) if i == 0 else ''
                lines.append(f'| {label} | {row} | ' + ' | '.join(cells) + ' |')
        lines += [
            '',
            '↑ / ↓: higher / lower is better. Best method per column in bold; '
            f'{REF_ROW} (no-reference metrics on the ground truth) is not ranked.',
            '',
        ]
        return '\n'.join(lines)

    def write_csv(self, path):
        """Full precision, one line per (metric, row); empty cells for missing values."""
        with open(path, 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f)
            writer.writerow(['metric', 'lower_better', 'method'] + self.datasets + [AVG])
            for metric in self.metrics:
                for row in self.metric_rows(metric):
                    vals = [self.value(metric, row, c) for c in self.datasets + [AVG]]
                    writer.writerow(
                        [metric, int(self.directions[metric]), row] + ['' if v is None else repr(v) for v in vals]
                    )

    @classmethod
    def read_csv(cls, path):
        """Inverse of `write_csv` (tests, or re-rendering a table)."""
        with open(path, newline='', encoding='utf-8') as f:
            rows = list(csv.reader(f))
        datasets = rows[0][3:-1]
        metrics, methods, directions, entries = [], [], {}, []
        for metric, lower, method, *vals in rows[1:]:
            if metric not in metrics:
                metrics.append(metric)
            if method not in methods:
                methods.append(method)
            directions[metric] = bool(int(lower))
            entries.append((metric, method, vals))
        table = cls(metrics, methods, datasets, directions)
        for metric, method, vals in entries:
            for d, v in zip(datasets, vals[:-1]):
                table.set(metric, method, d, float(v) if v else None)
        return table
