"""Plots of what the agent did, from a run's decision log (no torch, matplotlib's Agg only).

    python -m agent.runs.plot experiments/<name>                      # weights.png, scores.png
    python -m agent.runs.plot experiments/fixed experiments/random experiments/llm --out figs/
                                                                 # + compare_weights.png, compare_scores.png

- weights.png: the loss weights over iterations, like the paper's Figure 5. A decision applies
  from its record's `applied_iteration` (the boundary + 1, later for asynchronous decisions;
  the boundary itself in older logs), so the curve is a step (drawstyle steps-post). A log y-axis is
  chosen when the weights differ by >= 50x
  (L1 1.0 vs GAN 0.01 is a flat line otherwise).
- scores.png: each expert's mean over the validation images per stage, with the per-image
  min/max band and the per-image points; the title says which way is better (from the log's
  `directions`); stages where the policy's answer was not used (fallback) are marked.

`plot_experiment(exp_dir)` is what training calls at the end; it never raises.
Only matplotlib's object API is used (no pyplot): no global backend switch, no figure registry,
safe to call from a training process.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path
from collections.abc import Iterable

from ..decision_log import current_records, log_path
from ..record import StageRecord

ARROWS = {'lower': '↓', 'higher': '↑'}
LOG_RATIO = 50.0  # auto log-y when max/min of the positive weights reaches this
FALLBACK_COLOR = 'tab:red'


# ---- reading -------------------------------------------------------------------------------
def load_records(path) -> list[StageRecord]:
    """The run's current (not superseded) records, by iteration."""
    return current_records(path)


def loss_names(records: list[StageRecord]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r.weights_before))
        names.update(dict.fromkeys(r.weights_after or {}))
    return list(names)


def expert_names(records: list[StageRecord]) -> list[str]:
    """Experts with at least one numeric score, in the log's order (text experts are skipped)."""
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(e.name for e in r.experts))
        names.update(dict.fromkeys(r.scores))
    return [n for n in names if any(r.numbers(n) for r in records)]


def mean_score(record: StageRecord, expert: str) -> float | None:
    return record.mean_scores().get(expert)


def direction(records: list[StageRecord], expert: str) -> str | None:
    for r in records:
        d = r.directions().get(expert)
        if d in ARROWS:
            return d
    return None


# ---- drawing helpers -----------------------------------------------------------------------
def weight_series(records: list[StageRecord], name: str) -> tuple[list[float], list[float]]:
    """(iterations, weight applied from there on): the first record's weights_before at its
    iteration, then each record's weights_after (stage 0 keeps them, so that is the same value).
    A decision applies from its `applied_iteration` (later than the boundary when it was
    asynchronous), else from the boundary itself."""
    xs, ys = [], []
    if name in records[0].weights_before:
        xs.append(float(records[0].iteration))
        ys.append(records[0].weights_before[name])
    for r in records:
        xs.append(r.applied_from())
        value = (r.weights_after or {}).get(name)
        ys.append(value if value is not None and math.isfinite(value) else math.nan)
    return xs, ys


def choose_y_scale(values: Iterable[float], log_y='auto') -> str:
    """'linear', 'log' or 'symlog' (log with zero weights, which a plain log axis would drop)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    positive = [v for v in values if v > 0]
    if log_y in (False, 'off', 'linear') or not positive:
        return 'linear'
    wide = max(positive) / min(positive) >= LOG_RATIO
    if log_y in (True, 'on', 'log') or wide:
        return 'symlog' if any(v <= 0 for v in values) else 'log'
    return 'linear'


def apply_y_scale(ax, scale: str, values: Iterable[float]) -> None:
    if scale == 'symlog':
        positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
        ax.set_yscale('symlog', linthresh=min(positive) if positive else 1e-3)
    elif scale == 'log':
        ax.set_yscale('log')


def draw_weights(ax, records: list[StageRecord], names: list[str], colors: dict, scale: str, title: str) -> None:
    all_values = []
    for name in names:
        xs, ys = weight_series(records, name)
        all_values += ys
        ax.plot(xs, ys, drawstyle='steps-post', color=colors[name], label=name, linewidth=1.8)
        ax.plot(xs[-len(records) :], ys[-len(records) :], 'o', color=colors[name], markersize=3)
    kept = [r for r in records if r.fallback]
    for i, r in enumerate(kept):
        for name in names:
            y = (r.weights_after or {}).get(name)
            if y is not None and math.isfinite(y):
                ax.plot(
                    [r.applied_from()],
                    [y],
                    'x',
                    color=FALLBACK_COLOR,
                    markersize=8,
                    mew=2,
                    label='fallback (weights kept)' if i == 0 and name == names[0] else None,
                )
    apply_y_scale(ax, scale, all_values)
    ax.set_title(title)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss weight' + (' (log)' if scale != 'linear' else ''))
    ax.grid(True, alpha=0.3, which='both')


def draw_scores(
    ax, records: list[StageRecord], expert: str, color='tab:blue', label: str | None = None, points: bool = True
) -> None:
    xs, means, lows, highs = [], [], [], []
    for r in records:
        mean, values = mean_score(r, expert), r.numbers(expert)
        if mean is None:
            continue
        xs.append(r.iteration)
        means.append(mean)
        lows.append(min(values))
        highs.append(max(values))
        if points:
            ax.scatter([r.iteration] * len(values), values, s=6, color=color, alpha=0.35, linewidths=0)
    if not xs:
        return
    ax.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)
    ax.plot(xs, means, '-o', color=color, markersize=3, label=label or 'mean')


def mark_fallbacks(ax, records: list[StageRecord]) -> None:
    for i, r in enumerate(r for r in records if r.fallback):
        ax.axvline(
            r.iteration,
            color=FALLBACK_COLOR,
            linestyle=':',
            linewidth=1.2,
            label='fallback (weights kept)' if i == 0 else None,
        )


def expert_title(records: list[StageRecord], expert: str) -> str:
    d = direction(records, expert)
    return f'{expert} {ARROWS[d]} ({d} is better)' if d else expert


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def save(fig, path: Path) -> Path:
    """Write next to the target and rename, so a viewer never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.stem}.tmp.png')
    fig.savefig(tmp, dpi=110, format='png')
    os.replace(tmp, path)
    return path


def new_figure(rows: int, cols: int, width: float, height: float, **kwargs):
    from matplotlib.figure import Figure  # the object API renders with Agg, no pyplot state

    fig = Figure(figsize=(width * cols, height * rows), layout='constrained')
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, [ax for row in axes for ax in row]


def run_label(path) -> str:
    path = log_path(path)
    return path.parent.parent.name if path.parent.name == 'agent' else path.parent.name


def policy_label(records: list[StageRecord], run: str = '') -> str:
    """' (llm)': the policy that made the last decision, unless the run's name already says it."""
    policies = [r.policy for r in records if r.decided]
    return f' ({policies[-1]})' if policies and policies[-1] != run else ''


# ---- figures ------------------------------------------------------------------------------
def plot_weights(records: list[StageRecord], out: Path, title: str = '', log_y='auto') -> Path:
    names = loss_names(records)
    colors = {n: f'C{i % 10}' for i, n in enumerate(names)}
    values = [y for n in names for y in weight_series(records, n)[1]]
    fig, (ax,) = new_figure(1, 1, 7.0, 4.0)
    draw_weights(ax, records, names, colors, choose_y_scale(values, log_y), f'loss weights{title}')
    ax.legend(loc='best', fontsize=8)
    return save(fig, out)


def plot_scores(records: list[StageRecord], out: Path, title: str = '') -> Path | None:
    experts = expert_names(records)
    if not experts:
        return None
    rows, cols = grid(len(experts))
    fig, axes = new_figure(rows, cols, 4.2, 3.2)
    for ax, expert in zip(axes, experts):
        draw_scores(ax, records, expert)
        mark_fallbacks(ax, records)
        ax.set_title(expert_title(records, expert))
        ax.set_xlabel('iteration')
        ax.grid(True, alpha=0.3)
    for ax in axes[len(experts) :]:
        ax.set_visible(False)
    axes[0].legend(loc='best', fontsize=7, title='band: per-image min..max', title_fontsize=7)
    fig.suptitle(f'expert scores on the validation images{title}')
    return save(fig, out)


def plot_overview(records: list[StageRecord], out: Path, title: str = '', log_y='auto') -> Path:
    """One row: the loss weights, then one panel per expert (a run at a glance, e.g. in a study)."""
    names, experts = loss_names(records), expert_names(records)
    colors = {n: f'C{i % 10}' for i, n in enumerate(names)}
    values = [y for n in names for y in weight_series(records, n)[1]]
    fig, axes = new_figure(1, 1 + len(experts), 3.6, 2.8)
    draw_weights(axes[0], records, names, colors, choose_y_scale(values, log_y), 'loss weights')
    axes[0].legend(loc='best', fontsize=7)
    for ax, expert in zip(axes[1:], experts):
        draw_scores(ax, records, expert, color='C3')
        mark_fallbacks(ax, records)
        ax.set_title(expert_title(records, expert), fontsize=9)
        ax.set_xlabel('iteration')
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, out)


def plot_compare(exp_dirs: list, out_dir, log_y='auto') -> list[Path]:
    """Runs side by side: one weights panel per run (shared y), one scores panel per expert."""
    runs = [(run_label(d), load_records(d)) for d in exp_dirs]
    runs = [(label, records) for label, records in runs if records]
    if not runs:
        return []
    out_dir = Path(out_dir)
    names = list(dict.fromkeys(n for _, records in runs for n in loss_names(records)))
    colors = {n: f'C{i % 10}' for i, n in enumerate(names)}
    values = [y for _, records in runs for n in loss_names(records) for y in weight_series(records, n)[1]]
    scale = choose_y_scale(values, log_y)
    fig, axes = new_figure(1, len(runs), 4.2, 3.6, sharey=True)
    for ax, (label, records) in zip(axes, runs):
        draw_weights(ax, records, loss_names(records), colors, scale, label + policy_label(records, label))
    axes[0].legend(loc='best', fontsize=8)
    written = [save(fig, out_dir / 'compare_weights.png')]

    experts = list(dict.fromkeys(e for _, records in runs for e in expert_names(records)))
    if experts:
        rows, cols = grid(len(experts))
        fig, axes = new_figure(rows, cols, 4.2, 3.2)
        for ax, expert in zip(axes, experts):
            for i, (label, records) in enumerate(runs):
                draw_scores(ax, records, expert, color=f'C{i % 10}', label=label, points=False)
            ax.set_title(expert_title([r for _, records in runs for r in records], expert))
            ax.set_xlabel('iteration')
            ax.grid(True, alpha=0.3)
        for ax in axes[len(experts) :]:
            ax.set_visible(False)
        axes[0].legend(loc='best', fontsize=7)
        fig.suptitle('mean expert scores (band: per-image min..max)')
        written.append(save(fig, out_dir / 'compare_scores.png'))
    return written


def plot_experiment(exp_dir, out_dir=None, log_y='auto', logger: logging.Logger | None = None) -> list[Path]:
    """weights.png and scores.png into <exp_dir>/agent/ (or out_dir); the paths written.

    Never raises: plotting must not cost a finished training run. Problems (no log yet, bad
    records, matplotlib missing) are logged as a warning and [] is returned.
    """
    logger = logger or logging.getLogger('basicsr')
    try:
        records = load_records(exp_dir)
        if not records:
            logger.info(f'agent.runs.plot: no stage records in {log_path(exp_dir)}; nothing to plot')
            return []
        out_dir = Path(out_dir) if out_dir is not None else log_path(exp_dir).parent
        title = f' - {run_label(exp_dir)}{policy_label(records, run_label(exp_dir))}'
        written = [plot_weights(records, out_dir / 'weights.png', title, log_y)]
        scores = plot_scores(records, out_dir / 'scores.png', title)
        return written + ([scores] if scores else [])
    except Exception as err:  # noqa: BLE001  (a plot is never worth a traceback at the end of training)
        logger.warning(f'agent.runs.plot: could not plot {exp_dir}: {err!r}')
        return []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('experiments', nargs='+', type=Path, help='experiments/<name> folders (or decisions.jsonl)')
    parser.add_argument(
        '--out',
        type=Path,
        help="folder for the PNGs (default: each run's agent/ folder; compare_*.png go to the first run's)",
    )
    parser.add_argument(
        '--log-y',
        choices=('auto', 'on', 'off'),
        default='auto',
        help='log y-axis for the weights (auto: when they differ by >= 50x)',
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    logger = logging.getLogger('agent.runs.plot')
    several = len(args.experiments) > 1
    written = []
    for exp in args.experiments:
        if not load_records(exp):
            print(f'{exp}: no stage records at {log_path(exp)}')
            continue
        # several runs into one --out folder: one subfolder each, so they do not overwrite each other
        out = args.out / run_label(exp) if args.out and several else args.out
        written += plot_experiment(exp, out, args.log_y, logger)
    if several:
        out = args.out or log_path(args.experiments[0]).parent
        try:
            written += plot_compare(args.experiments, out, args.log_y)
        except Exception as err:  # noqa: BLE001
            print(f'compare plots failed: {err!r}')
    for path in written:
        print(path)
    return 0 if written else 1


if __name__ == '__main__':
    raise SystemExit(main())
