"""The `agent` section of a training option file, read strictly into one dataclass.

    agent:
      stage_iters: 5000        # a boundary every N iterations (and stage 0 before training)
      num_images: 10           # validation images, drawn once with image_seed
      image_seed: 0
      dataset: {...}           # any BasicSR dataset (required)
      experts: {...}           # name -> expert options (required; lossagent_hook/experts/)
      policy: {type: fixed}    # agent/*_policy.py; its own keys are checked by the policy
      initial_weights: ~       # a list in repository order or a mapping by name
      task: image super-resolution
      policy_seed: ~           # default: manual_seed
      async: false             # keep training while the policy thinks
      boundary_budget_s: 3600  # a boundary never waits longer for a decision
      async_poll_iters: ~      # default 1 (one process) or 10 (several)
      pad_multiple: ~          # default network_g.window_size, else 1
      dist_timeout_s: ~        # default max(1800, 2 * boundary_budget_s)
      score_network: ~         # ema | net_g: the generator the experts score (default ema when
                               # train.ema_decay > 0: the network users deploy)
      snapshots: 1             # average the score experts over this many snapshots per stage,
      snapshot_every: ~        # taken this many iterations apart, the last at the boundary
                               # (default: spread over the stage's second half)
      stage_images: true       # each stage's restorations as PNG under agent/stage_<k>/ (+ LQ, GT once)
      human_approval: false    # a person approves or edits each proposal (the run board) before it applies
      approval_timeout_s: 600  # ... or the proposal applies after this long
      board: ~                 # start the run board beside the run: {port: 8080, host: 127.0.0.1}

An unknown key is a start-up error with the closest valid one: a typo (`stage_iter: 1`) would
otherwise train a whole run with the default. `AgentOptions.from_opt` is the only reader of the
section; lossagent_models/training_specs.py calls it once per run and the model and the stage hook
receive the result. What the policy needs from the hook is its class's `needs_probes`, looked up here
(the policy's own keys are checked by the policy, through the registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.options import as_number
from agent.policies import find_policy, selected_options
from agent.runs.board.launch import check_board_options
from agent.weights import check_weights
from lossagent_errors import OptionError, check_keys

DEFAULTS = {
    'stage_iters': 5000,
    'num_images': 10,
    'image_seed': 0,
    'dataset': None,
    'experts': None,
    'policy': None,
    'initial_weights': None,
    'task': 'image super-resolution',
    'policy_seed': None,
    'async': False,
    'boundary_budget_s': 3600.0,
    'async_poll_iters': None,
    'pad_multiple': None,
    'dist_timeout_s': None,
    'score_network': None,
    'snapshots': 1,
    'snapshot_every': None,
    'stage_images': True,
    'human_approval': False,
    'approval_timeout_s': 600.0,
    'board': None,
}


def positive(section: dict, key: str, integer: bool = True, prefix: str = 'agent') -> int | float:
    value = as_number(section[key])
    ok = value is not None and value > 0 and (not integer or value.is_integer())
    if not ok:
        raise OptionError(
            f'{prefix}.{key} must be a positive {"integer" if integer else "number"}, got {section[key]!r}'
        )
    return int(value) if integer else value


def non_negative_int(section: dict, key: str, prefix: str = 'agent') -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f'{prefix}.{key} must be a non-negative integer, got {value!r}')
    return value


@dataclass(frozen=True)
class AgentOptions:
    stage_iters: int
    num_images: int
    image_seed: int
    dataset: dict
    experts: dict
    policy: dict
    initial_weights: Any
    task: str
    policy_seed: int
    async_decisions: bool
    boundary_budget_s: float
    async_poll_iters: int
    pad_multiple: int
    dist_timeout_s: float
    score_network: str
    snapshots: int
    snapshot_every: int
    stage_images: bool
    human_approval: bool
    approval_timeout_s: float
    board: dict | None
    needs_probes: bool  # the policy's class trains candidates at each boundary (the lookahead loop)

    def snapshot_iterations(self, boundary: int) -> list[int]:
        """The iterations averaged into a boundary's scores, oldest first (just the boundary: [boundary])."""
        return [boundary - j * self.snapshot_every for j in range(self.snapshots - 1, -1, -1)]

    @classmethod
    def from_opt(cls, opt: dict) -> AgentOptions:
        """The validated `agent` section of the whole option dict `opt` (defaults come from it too)."""
        section = opt.get('agent')
        if not isinstance(section, dict):
            raise OptionError(f'agent: expected a mapping of agent options, got {section!r}')
        check_keys(section, DEFAULTS, 'agent')
        a = {**DEFAULTS, **section}
        if not isinstance(a['dataset'], dict):
            raise OptionError("agent.dataset: missing (BasicSR dataset options for the agent's validation images)")
        if not isinstance(a['experts'], dict) or not a['experts']:
            raise OptionError('agent.experts: give at least one expert, e.g. {NIQE: {metric: niqe}}')
        policy = a['policy'] if a['policy'] is not None else {'type': 'fixed'}
        if not isinstance(policy, dict):
            raise OptionError(f'agent.policy: expected a mapping with a type, got {policy!r}')
        # an unknown type is the policy check's error, later (check_policy names the closest type)
        kind = policy.get('type', 'fixed')
        needs_probes = bool(getattr(find_policy(kind) if isinstance(kind, str) else None, 'needs_probes', False))
        for key in ('async', 'stage_images', 'human_approval'):
            if not isinstance(a[key], bool):
                raise OptionError(f'agent.{key}: got {a[key]!r}; expected true or false')
        if not isinstance(a['task'], str) or not a['task'].strip():
            raise OptionError(f"agent.task: got {a['task']!r}; expected a description such as 'image super-resolution'")
        world_size = int(opt.get('world_size', 1) or 1)
        defaults = {
            'async_poll_iters': 1 if world_size == 1 else 10,
            'pad_multiple': int((opt.get('network_g') or {}).get('window_size', 1) or 1),
            'policy_seed': int(opt.get('manual_seed', 0) or 0),
        }
        for key, value in defaults.items():
            if a[key] is None:
                a[key] = value
        budget = positive(a, 'boundary_budget_s', integer=False)
        if a['dist_timeout_s'] is None:
            a['dist_timeout_s'] = max(1800.0, 2 * budget)
        stage_iters = positive(a, 'stage_iters')
        ema = float((opt.get('train') or {}).get('ema_decay', 0) or 0) > 0
        if a['score_network'] is None:
            a['score_network'] = 'ema' if ema else 'net_g'
        if a['score_network'] not in ('ema', 'net_g'):
            raise OptionError(f"agent.score_network: got {a['score_network']!r}; expected 'ema' or 'net_g'")
        if a['score_network'] == 'ema' and not ema:
            raise OptionError('agent.score_network: ema needs an EMA generator (train.ema_decay > 0)')
        snapshots = positive(a, 'snapshots')
        if a['snapshot_every'] is None:
            a['snapshot_every'] = max(1, stage_iters // (2 * snapshots))
        every = positive(a, 'snapshot_every')
        if (snapshots - 1) * every >= stage_iters:
            raise OptionError(
                f'agent.snapshot_every: {snapshots} snapshots {every} iterations apart do not fit in '
                f'a stage of {stage_iters}'
            )
        approval_timeout = positive(a, 'approval_timeout_s', integer=False)
        if a['human_approval'] and approval_timeout >= budget:
            raise OptionError(
                f'agent.approval_timeout_s: {approval_timeout:g} s is not shorter than '
                f'agent.boundary_budget_s ({budget:g} s), which bounds the policy and the approval '
                'together'
            )
        if a['human_approval'] and needs_probes:
            raise OptionError(
                'agent.human_approval: the lookahead policy trains its candidates on the spot and '
                'chooses by their scores; there is no single proposal to approve'
            )
        options = cls(
            stage_iters=stage_iters,
            num_images=positive(a, 'num_images'),
            image_seed=non_negative_int(a, 'image_seed'),
            dataset=dict(a['dataset']),
            experts=dict(a['experts']),
            policy=dict(policy),
            initial_weights=a['initial_weights'],
            task=a['task'],
            policy_seed=non_negative_int(a, 'policy_seed'),
            async_decisions=a['async'],
            boundary_budget_s=budget,
            async_poll_iters=positive(a, 'async_poll_iters'),
            pad_multiple=positive(a, 'pad_multiple'),
            dist_timeout_s=positive(a, 'dist_timeout_s', integer=False),
            score_network=a['score_network'],
            snapshots=snapshots,
            snapshot_every=every,
            stage_images=a['stage_images'],
            human_approval=a['human_approval'],
            approval_timeout_s=approval_timeout,
            board=check_board_options(a['board']),
            needs_probes=needs_probes,
        )
        options.check_probe_window()
        return options

    def check_probe_window(self) -> None:
        """What a probing policy cannot see on its own: its window must fit in a stage, and decisions
        are synchronous."""
        if not self.needs_probes:
            return
        kind, options = selected_options(self.policy)
        probe_iters = options.get('probe_iters', 10)
        key = (
            f'agent.policy.{kind}.probe_iters'
            if isinstance(self.policy.get(kind), dict)
            else 'agent.policy.probe_iters'
        )
        if isinstance(probe_iters, int) and not isinstance(probe_iters, bool) and probe_iters >= self.stage_iters:
            raise OptionError(
                f'{key}: {probe_iters} must be smaller than agent.stage_iters '
                f'({self.stage_iters}): the winner trains on for the rest of the stage'
            )
        if self.async_decisions:
            raise OptionError(
                'agent.async: the lookahead policy trains its candidates at the boundary; '
                'it cannot decide asynchronously (set agent.async: false)'
            )


def initial_weights_option(value, names: list[str]) -> dict[str, float] | None:
    """`agent.initial_weights` (a list in repository order or a mapping by name) as checked weights by
    name (where these weights enter, `check_weights` runs once), or None when not given."""
    if value is None:
        return None
    if isinstance(value, dict):
        if sorted(map(str, value)) != sorted(names):
            raise OptionError(
                f'agent.initial_weights: names {sorted(map(str, value))} do not match the loss repository {names}'
            )
        weights = {n: value[n] for n in names}
    elif isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise OptionError(f'agent.initial_weights: {len(value)} weights for {len(names)} losses {names}')
        weights = dict(zip(names, value))
    else:
        raise OptionError(f'agent.initial_weights: expected a list or a mapping, got {value!r}')
    problem = check_weights(weights, names)
    if problem:
        raise OptionError(f'agent.initial_weights: {problem}')
    return {n: float(weights[n]) for n in names}
