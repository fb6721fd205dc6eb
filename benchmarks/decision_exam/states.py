"""The counterfactual part's decision points: training states saved at the boundaries of real demo runs.

One `train.py` run per seed on options/train/demo_cpu.yml with its policy pinned to the one it has
today (`RUN_POLICY`, adaptive-paired, which sets the weights between boundaries), shortened to the last
boundary the exam uses and saving a checkpoint at every boundary. The runs go through
benchmarks/policy_study/runner.py, which reuses a finished run whose options and code (a hash of the
training code) are unchanged: the states are made once and cached
under experiments/ (gitignored), and a rerun of the exam trains nothing.

A decision point is (seed, boundary): the networks and optimizers saved at that iteration, and the
history the run's agent had there -- its decision log up to that stage, with the stage's own decision
taken out (the policies under test make it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from agent import History, StageRecord
from agent.decision_log import current_records

from . import ROOT
from .policies import RUN_POLICY
from policy_study import runner
from policy_study.plan import demo_options


@dataclass(frozen=True)
class StateRun:
    name: str
    seed: int
    opt: dict

    @property
    def folder(self) -> Path:
        return ROOT / 'experiments' / self.name


@dataclass(frozen=True)
class Point:
    seed: int
    boundary: int  # the iteration
    run: StateRun

    @property
    def key(self) -> str:
        return f's{self.seed}@{self.boundary}'


def state_runs(seeds: list[int], last_boundary: int, prefix: str = 'exam_states') -> list[StateRun]:
    """The demo's options per seed: trained to `last_boundary`, a checkpoint at every boundary."""
    runs = []
    for seed in seeds:
        opt = demo_options()
        opt['name'] = f'{prefix}_s{seed}'
        opt['manual_seed'] = seed
        opt['num_gpu'] = 0
        opt['train']['total_iter'] = last_boundary
        opt['logger']['save_checkpoint_freq'] = opt['agent']['stage_iters']
        opt['logger']['use_tb_logger'] = False
        opt['agent']['policy'] = dict(RUN_POLICY)  # pinned: the demo's choice today, whatever it becomes
        runs.append(StateRun(opt['name'], seed, opt))
    return runs


def make_states(runs: list[StateRun], jobs: int) -> tuple[dict, list[str]]:
    """Train the runs not cached yet (`jobs` at a time, one thread each): ({name: {'wall_s', 'cpu_s'}},
    the names of the runs reused from the cache)."""
    out = ROOT / 'experiments' / 'exam_logs'
    for sub in ('options', 'logs'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    source = runner.source_hash()
    reused = [r.name for r in runs if runner.finished(r.name, r.opt, source) is not None]
    took = runner.run_all(runs, out, jobs=jobs, threads=1)
    missing = [r.name for r in runs if r.name not in took]
    if missing:
        raise SystemExit(f'exam: the state runs {missing} failed; logs in {out}/logs')
    return took, reused


def points(runs: list[StateRun], boundaries: list[int]) -> list[Point]:
    return [Point(run.seed, b, run) for run in runs for b in boundaries]


def history_at(point: Point) -> History:
    """The run's records up to the point's stage; the last one as measured, before its decision."""
    records = [
        r for r in current_records(point.run.folder / 'agent' / 'decisions.jsonl') if r.iteration <= point.boundary
    ]
    if not records or records[-1].iteration != point.boundary:
        raise SystemExit(f'exam: {point.run.name} has no record at iteration {point.boundary}')
    last = records[-1]
    records[-1] = StageRecord(
        last.stage,
        last.iteration,
        dict(last.weights_before),
        copy.deepcopy(last.scores),
        experts=list(last.experts),
        images=list(last.images),
        expert_errors=dict(last.expert_errors),
        eval_s=last.eval_s,
        scored_network=last.scored_network,
        snapshots=list(last.snapshots),
    )
    return History(records)


def run_decision(point: Point) -> dict | None:
    """The weights the run's own policy chose at the point (what the exam's policies replace)."""
    for record in current_records(point.run.folder / 'agent' / 'decisions.jsonl'):
        if record.iteration == point.boundary:
            return record.weights_after
    return None


def snapshot_at(folder: Path, boundary: int) -> dict:
    """The training state a run saved at `boundary`, in the lookahead's snapshot form
    (training_snapshot.py): the networks from the saved models, the optimizers from the training state."""
    folder = Path(folder)
    g = torch.load(folder / 'models' / f'net_g_{boundary}.pth', map_location='cpu', weights_only=True)
    d = torch.load(folder / 'models' / f'net_d_{boundary}.pth', map_location='cpu', weights_only=True)
    state = torch.load(folder / 'training_states' / f'{boundary}.state', map_location='cpu', weights_only=True)
    return {
        'nets': {'net_g': g['params'], 'net_g_ema': g['params_ema'], 'net_d': d['params']},
        'optimizers': state['optimizers'],
        'skipped_updates': 0,
        'nonfinite_reported': [],
    }
