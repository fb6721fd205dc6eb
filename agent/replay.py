"""Re-ask a finished (or running) run's stage boundaries without training.

    python -m agent.replay experiments/<name>/agent/decisions.jsonl --opt options/train/X.yml \
        [--policy-type llm] [--base-url URL] [--model M] [--stage K] [--out replay.jsonl]

The History is rebuilt from the log (records not marked superseded, by stage; a later
line for the same stage wins), the policy from the YAML's `agent.policy` with the CLI
overrides, and each boundary is decided again on the history the run had at that
point. Old and new weights are printed side by side. Expert directions come from the
log's `experts` field when the glue recorded it, else from `agent.experts` in the YAML
(explicit `lower_better`, else the pyiqa table in agent/experts.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .base import AgentConfigError, ExpertInfo, History, StageRecord
from .experts import experts_from_opt, known_direction
from .registry import build_policy


def load_records(path: Path) -> list[dict]:
    """Non-superseded decision lines, one per stage, ordered by stage."""
    by_stage: dict[int, dict] = {}
    for n, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            print(f'{path}:{n}: skipped, not JSON (a line cut by a crash?)', file=sys.stderr)
            continue
        if rec.get('superseded'):
            continue
        by_stage[int(rec['stage'])] = rec
    return [by_stage[k] for k in sorted(by_stage)]


def history_from_records(records: list[dict]) -> History:
    return History([StageRecord(stage=int(r['stage']), iteration=int(r['iteration']),
                                weights={k: float(v) for k, v in r['weights_before'].items()},
                                scores={k: list(v) for k, v in (r.get('scores') or {}).items()})
                    for r in records])


def experts_for(records: list[dict], agent_opt: dict) -> tuple[list[ExpertInfo], str]:
    """Expert list and where the directions came from ('log' or 'yaml')."""
    for rec in records:
        logged = rec.get('experts')
        if logged:
            items = logged.items() if isinstance(logged, dict) else [(e['name'], e) for e in logged]
            return [ExpertInfo(str(name), bool(e.get('lower_better', False)), e.get('kind', 'score'))
                    for name, e in items], 'log'
    names = list((records[0].get('scores') or {}).keys()) if records else []
    experts_opt = agent_opt.get('experts') or {}
    known = {e.name: e for e in experts_from_opt(experts_opt)} if experts_opt else {}
    out = []
    for name in names:
        if name in known:
            out.append(known[name])
            continue
        values = [v for r in records for v in (r.get('scores') or {}).get(name, []) if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out.append(ExpertInfo(name, False, 'text'))
            continue
        lower = known_direction(name)
        if lower is None:
            raise AgentConfigError(f'agent.experts.{name}.lower_better: not in the log nor the YAML; add it')
        out.append(ExpertInfo(name, lower))
    return out, 'yaml'


def fmt_weights(weights: Optional[dict], names: list[str]) -> str:
    return ':'.join(f'{float(weights[n]):.4g}' for n in names) if weights else '-'


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog='python -m agent.replay', description=__doc__.splitlines()[0])
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
    seed = int(agent_opt.get('seed', opt.get('manual_seed', 0)) or 0)
    policy = build_policy(policy_opt, names, [history.records[0].weights[n] for n in names], experts,
                          seed=seed, task=agent_opt.get('task', 'image super-resolution'))
    stages = [r.stage for r in history.records[1:] if args.stage is None or r.stage == args.stage]
    if not stages:
        print(f'stage {args.stage} is not in {args.decisions}', file=sys.stderr)
        return 2

    print(f"policy {policy.name}, experts from the {source}: "
          + ', '.join(f"{e.name} ({'text' if e.kind == 'text' else e.direction})" for e in experts))
    header = f"{'stage':>5} {'iter':>8}  {'recorded ' + ':'.join(names):<34} {'replayed':<28} note"
    print(header)
    print('-' * len(header))
    out = args.out.open('w', encoding='utf-8') if args.out else None
    try:
        for k in stages:
            index = next(i for i, r in enumerate(history.records) if r.stage == k)
            decision = policy.decide(History(history.records[:index + 1]))
            old = records[index]
            note = 'replayed fallback: ' + decision.fallback if decision.fallback else ''
            if old.get('fallback'):
                note += ('; ' if note else '') + 'recorded fallback: ' + str(old['fallback'])
            print(f'{k:>5} {history.records[index].iteration:>8}  '
                  f"{fmt_weights(old.get('weights_after'), names):<34} "
                  f'{fmt_weights(decision.weights, names):<28} {note[:120]}')
            if out:
                out.write(json.dumps({'stage': k, 'iteration': history.records[index].iteration,
                                      'recorded': old.get('weights_after'), **decision.to_dict()}) + '\n')
    finally:
        policy.close()
        if out:
            out.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
