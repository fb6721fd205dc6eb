"""Print a run's agent trajectory as a table, and how well the LLM's answers met the format:
`python -m agent.runs.summary experiments/<name>`; `--thoughts N` adds up to N of each stage's Thoughts."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ..decision_log import log_path, read_records
from ..record import StageRecord


def format_table(records: list[StageRecord]) -> str:
    if not records:
        return '(no stage records yet)'
    first = records[0]
    experts = list(first.scores)
    arrows = {e.name: e.arrow for e in first.experts}
    losses = list(first.weights_after or first.weights_before)
    header = (
        ['stage', 'iter']
        + [f'{e}{arrows.get(e, "")}' for e in experts]
        + [f'w_{n}' for n in losses]
        + ['policy', 'note']
    )
    rows = []
    for r in records:
        means = r.mean_scores()
        after = r.weights_after or r.weights_before
        rows.append(
            [str(r.stage), str(r.iteration)]
            + [f'{means[e]:.4g}' if means.get(e) is not None else 'n/a' for e in experts]
            + [f'{after[n]:.4g}' for n in losses]
            + [r.policy, ('kept: ' + r.fallback) if r.fallback else '']
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return '\n'.join([line(header), line(['-' * w for w in widths])] + [line(r) for r in rows])


def format_compliance(records: list[StageRecord]) -> str:
    """The llm policy's format figures over the run (`info['compliance']` of each decision, see
    agent/policies/llm_policy.py); '' when no decision has them. The paper's Sec. 4.3 reports 799/800 answers
    parseable with its format example: `first answers usable` is that number."""
    total, forms, modes, boundaries = Counter(), Counter(), Counter(), 0
    for r in records:
        c = r.info.get('compliance') if r.decided else None
        if not isinstance(c, dict):
            continue
        boundaries += 1
        modes[str(r.info.get('structured_output', '?'))] += 1
        total.update(
            {
                k: int(c.get(k, 0))
                for k in (
                    'prompts',
                    'first_valid',
                    'reprompted',
                    'recovered',
                    'valid',
                    'no_answer',
                    'repeats_example',
                    'repeats_current',
                    'template_thoughts',
                )
            }
        )
        forms.update({str(k): int(v) for k, v in (c.get('forms') or {}).items()})
    if not boundaries:
        return ''
    n = total['prompts']

    def share(k: int) -> str:
        return f'{k}/{n} ({100 * k / n:.1f} %)' if n else f'{k}/0'

    spellings = ', '.join(f'{name} {count}' for name, count in forms.most_common()) or 'none'
    return (
        f'Format compliance over {boundaries} boundaries (structured_output: {", ".join(sorted(modes))}):\n'
        f'  first answers usable       {share(total["first_valid"])}\n'
        f'  usable after one re-prompt {share(total["valid"])} (re-prompted {total["reprompted"]}, '
        f'recovered {total["recovered"]})\n'
        f'  never answered             {share(total["no_answer"])}\n'
        f'  usable answers written as  {spellings}\n'
        f'  weights of the format example {share(total["repeats_example"])}, the current weights '
        f'{share(total["repeats_current"])}; placeholder Thoughts {share(total["template_thoughts"])}'
    )


def format_thoughts(records: list[StageRecord], limit: int = 1, width: int = 160) -> str:
    """Up to `limit` distinct Thoughts of each llm decision (`info['thoughts']`, one per prompt), most
    frequent first, each cut at `width` characters; '' when no decision has any."""
    lines = []
    for r in records:
        said = [' '.join(str(t).split()) for t in (r.info.get('thoughts') or []) if t and str(t).strip()]
        if not r.decided or not said:
            continue
        counts = Counter(said)
        for k, (text, count) in enumerate(counts.most_common(limit)):
            cut = text if len(text) <= width else text[: width - 3] + '...'
            times = f' (x{count})' if count > 1 else ''
            lines.append(f'  {f"stage {r.stage}" if k == 0 else "":9s} {cut}{times}')
        if len(counts) > limit:
            lines.append(f'  {"":9s} (+{len(counts) - limit} other Thoughts of {len(said)} answers)')
    return 'Thoughts per stage:\n' + '\n'.join(lines) if lines else ''


def time_line(records: list[StageRecord]) -> str:
    """What the agent cost the run (paper Table 12's "LLM Reasoning" and "Feedback" columns)."""
    feedback = [r.eval_s for r in records if r.eval_s is not None]
    reasoning = [r.latency_s for r in records if r.decided and r.latency_s is not None]
    return (
        f'agent time: feedback (restoring + experts) {sum(feedback) / 60:.2f} min over {len(feedback)} '
        f'boundaries; policy (LLM reasoning) {sum(reasoning) / 60:.2f} min over {len(reasoning)} decisions'
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('experiment', type=Path, help='experiments/<name> folder or its decisions.jsonl')
    parser.add_argument(
        '--thoughts',
        type=int,
        default=0,
        metavar='N',
        help="show up to N distinct Thoughts of each stage's LLM answers",
    )
    args = parser.parse_args(argv)
    path = log_path(args.experiment)
    if not path.exists():
        raise SystemExit(f'no decision log at {path}')
    records = list(read_records(path))
    print(format_table(records))
    if records:
        print(time_line(records))
    compliance = format_compliance(records)
    if compliance:
        print('\n' + compliance)
    thoughts = format_thoughts(records, args.thoughts) if args.thoughts > 0 else ''
    if thoughts:
        print('\n' + thoughts)


if __name__ == '__main__':
    main()
