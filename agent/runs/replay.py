"""Re-ask a finished (or running) run's stage boundaries without training.

    python -m agent.runs.replay experiments/<name>/agent/decisions.jsonl --opt options/train/X.yml \
        [--policy-type llm] [--base-url URL] [--model M] [--stage K] [--out replay.jsonl]

The History is rebuilt from the log (records not marked superseded, by stage; a later
line for the same stage wins), the policy from the YAML's `agent.policy` with the CLI
overrides, and each boundary is decided again on the history the run had at that
point. Old and new weights are printed side by side. Expert directions come from the
log's `experts` field when the glue recorded it, else from `agent.experts` in the YAML
(explicit `lower_better`, else the direction table in agent/directions.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..decision_log import current_records
from ..directions import lower_better
from ..experts import experts_from_opt
from ..record import ExpertInfo, History, StageRecord
from ..policies import build_policy


def load_records(path: Path) -> list[StageRecord]:
    """Non-superseded stage records, one per stage (a later line wins)."""
    return current_records(path)


def history_from_records(records: list[StageRecord]) -> History:
    return History(list(records))


def experts_for(records: list[StageRecord], agent_opt: dict) -> tuple[list[ExpertInfo], str]:
    """Expert list and where the directions came from ('log' or 'yaml')."""
    for rec in records:
        if rec.experts:
            return list(rec.experts), 'log'
    names = list(records[0].scores) if records else []
    experts_opt = agent_opt.get('experts') or {}
    known = {e.name: e for e in experts_from_opt(experts_opt)} if experts_opt else {}
    out = []
    for name in names:
        if name in known:
            out.append(known[name])
            continue
        values = [v for r in records for v in r.scores.get(name, []) if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out.append(ExpertInfo(name, False, 'text'))
            continue
        out.append(ExpertInfo(name, lower_better(name, f'agent.experts.{name}.lower_better')))
    return out, 'yaml'


def fmt_weights(weights: dict | None, names: list[str]) -> str:
    return ':'.join(f'{float(weights[n]):.4g}' for n in names) if weights else '-'


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='python -m agent.runs.replay', description=__doc__.splitlines()[0])
    ap.add_argument('decisions', type=Path, help='experiments/<name>/agent/decisions.jsonl')
    ap.add_argument('--opt', type=Path, required=True, help="the run's options YAML")
    ap.add_argument('--policy-type', help='override agent.policy.type')
    ap.add_argument('--base-url', help='override agent.policy.base_url')
    ap.add_argument('--model', help='override agent.policy.model')
    ap.add_argument('--stage', type=int, help='replay only this boundary')
    ap.add_argument('--out', type=Path, help='also write the new decisions here as JSON lines')
    args = ap.parse_args(argv)

    import yaml

    opt = yaml.safe_load(args.opt.read_text(encoding='utf-8')) or {}
    agent_opt = opt.get('agent') or {}
    policy_opt = dict(agent_opt.get('policy') or {})
    for key, value in (('type', args.policy_type), ('base_url', args.base_url), ('model', args.model)):
        if value is not None:
            policy_opt[key] = value
    records = load_records(args.decisions)
    if len(records) < 2:
        print(f'{args.decisions}: needs stage 0 and at least one boundary', file=sys.stderr)
        return 2
    history = history_from_records(records)
    experts, source = experts_for(records, agent_opt)
    names = list(history.records[0].weights)
    seed = int(agent_opt.get('policy_seed', opt.get('manual_seed', 0)) or 0)  # as the stage hook seeds it
    policy = build_policy(
        policy_opt,
        names,
        [history.records[0].weights[n] for n in names],
        experts,
        seed=seed,
        task=agent_opt.get('task', 'image super-resolution'),
    )
    stages = [r.stage for r in history.records[1:] if args.stage is None or r.stage == args.stage]
    if not stages:
        print(f'stage {args.stage} is not in {args.decisions}', file=sys.stderr)
        return 2

    print(
        f'policy {policy.name}, experts from the {source}: '
        + ', '.join(f'{e.name} ({"text" if e.kind == "text" else e.direction})' for e in experts)
    )
    header = f'{"stage":>5} {"iter":>8}  {"recorded " + ":".join(names):<34} {"replayed":<28} note'
    print(header)
    print('-' * len(header))
    out = args.out.open('w', encoding='utf-8') if args.out else None
    try:
        for k in stages:
            index = next(i for i, r in enumerate(history.records) if r.stage == k)
            decision = policy.decide(History(history.records[: index + 1]))
            old = records[index]
            note = 'replayed fallback: ' + decision.fallback if decision.fallback else ''
            if old.fallback:
                note += ('; ' if note else '') + 'recorded fallback: ' + old.fallback
            print(
                f'{k:>5} {old.iteration:>8}  {fmt_weights(old.weights_after, names):<34} '
                f'{fmt_weights(decision.weights, names):<28} {note[:120]}'
            )
            if out:
                out.write(
                    json.dumps(
                        {'stage': k, 'iteration': old.iteration, 'recorded': old.weights_after, **decision.to_dict()}
                    )
                    + '\n'
                )
    finally:
        policy.close()
        if out:
            out.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
