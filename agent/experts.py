"""Which way each expert goes, from `agent.experts` in the YAML.

    agent:
      experts:
        NIQE: {metric: niqe}                      # direction from the table below
        MyScore: {metric: my_metric, lower_better: true}
        Critic: {type: critique, ...}             # a text critique per image (kind text)
        Human: {type: human}                      # a person's feedback (kind text)

The section is a mapping (name -> options), the grammar the option check accepts; `expert_entries`
reads it for both the agent and the glue. A missing `lower_better` is resolved by
`agent.directions.lower_better`; an unknown metric without `lower_better` is an error naming the key
(a wrong direction silently trains the wrong way).
"""

from __future__ import annotations

import math

from lossagent_errors import OptionError

from .directions import lower_better
from .record import ExpertInfo

# The glue's expert types whose answers are text, not scores (lossagent_hook/experts/).
TEXT_EXPERT_TYPES = {'critique': 'text', 'human': 'text'}


def expert_weight(name: str, value, key: str = 'agent.experts') -> float:
    """`agent.experts.<name>.weight`: the expert's priority where a policy combines experts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OptionError(f'{key}.{name}.weight: got {value!r}; expected a number >= 0')
    return float(value)


def expert_entries(experts_opt, key: str = 'agent.experts') -> list[tuple[str, dict]]:
    """The one grammar of `agent.experts`: a non-empty mapping of the name the LLM sees to that expert's
    options (a mapping; empty means the default type with no options). Read here for the agent
    (directions) and by the glue's expert registry (lossagent_hook/experts/) alike."""
    if not isinstance(experts_opt, dict) or not experts_opt:
        raise OptionError(f'{key}: give at least one expert, e.g. {{NIQE: {{metric: niqe}}}}')
    entries = []
    for name, spec in experts_opt.items():
        if spec is not None and not isinstance(spec, dict):
            raise OptionError(f'{key}.{name}: got {spec!r}; expected a mapping such as {{metric: niqe}}')
        entries.append((str(name), dict(spec or {})))
    return entries


def experts_from_opt(experts_opt, key: str = 'agent.experts') -> list[ExpertInfo]:
    """`agent.experts` (see `expert_entries`) -> ExpertInfo list, without pyiqa."""
    out = []
    for name, spec in expert_entries(experts_opt, key):
        kind = spec.get('kind', TEXT_EXPERT_TYPES.get(spec.get('type'), 'score'))
        if kind not in ('score', 'text'):
            raise OptionError(f"{key}.{name}.kind: got {kind!r}; allowed values are ['score', 'text']")
        override = spec.get('lower_better')
        lower = (
            lower_better(spec.get('metric', name), f'{key}.{name}.lower_better', override)
            if kind == 'score' or override is not None
            else False
        )
        out.append(
            ExpertInfo(
                name=name, lower_better=lower, kind=kind, weight=expert_weight(name, spec.get('weight', 1.0), key)
            )
        )
    return out
