"""Which way each expert goes, from `agent.experts` in the YAML.

    agent:
      experts:
        NIQE: {metric: niqe}                      # direction from the table below
        MyScore: {metric: my_metric, lower_better: true}
        Critic: {type: critique, ...}             # a text critique per image (kind text)
        Human: {type: human}                      # a person's feedback (kind text)

A missing `lower_better` is looked up in the direction table (agent/directions.py); an unknown metric without
`lower_better` is an error naming the key (a wrong direction silently trains the wrong way).
"""
from __future__ import annotations

import math

from lossagent_errors import OptionError

from .directions import known_direction
from .record import ExpertInfo

# The glue's expert types whose answers are text, not scores (lossagent_hook/experts.py).
TEXT_EXPERT_TYPES = {'critique': 'text', 'human': 'text'}


def expert_weight(name: str, value, key: str = 'agent.experts') -> float:
    """`agent.experts.<name>.weight`: the expert's priority where a policy combines experts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OptionError(f'{key}.{name}.weight: got {value!r}; expected a number >= 0')
    return float(value)


def experts_from_opt(experts_opt, key: str = 'agent.experts') -> list[ExpertInfo]:
    """`agent.experts` (a mapping name -> options, or a list of {name: ..., ...}) -> ExpertInfo list."""
    if isinstance(experts_opt, dict):
        items = [(name, spec or {}) for name, spec in experts_opt.items()]
    elif isinstance(experts_opt, list):
        items = []
        for spec in experts_opt:
            if not isinstance(spec, dict) or 'name' not in spec:
                raise OptionError(f'{key}: list entries need a name: got {spec!r}')
            items.append((spec['name'], spec))
    else:
        raise OptionError(f'{key}: got {experts_opt!r}; expected a mapping name -> {{metric, lower_better}}')
    out = []
    for name, spec in items:
        if not isinstance(spec, dict):
            raise OptionError(f'{key}.{name}: got {spec!r}; expected a mapping')
        kind = spec.get('kind', TEXT_EXPERT_TYPES.get(spec.get('type'), 'score'))
        if kind not in ('score', 'text'):
            raise OptionError(f"{key}.{name}.kind: got {kind!r}; allowed values are ['score', 'text']")
        lower = spec.get('lower_better')
        if lower is None and kind == 'score':
            lower = known_direction(spec.get('metric', name))
            if lower is None:
                raise OptionError(f'{key}.{name}.lower_better: unknown metric '
                                       f"{spec.get('metric', name)!r}; say whether lower is better")
        if lower is not None and not isinstance(lower, bool):
            raise OptionError(f'{key}.{name}.lower_better: got {lower!r}; expected true or false')
        out.append(ExpertInfo(name=str(name), lower_better=bool(lower), kind=kind,
                              weight=expert_weight(name, spec.get('weight', 1.0), key)))
    return out
