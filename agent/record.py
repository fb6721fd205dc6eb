"""The stage record: one boundary of a run, the only shape in which a boundary is passed around.

The stage hook fills one in at every boundary (scores first, the decision after), the decision
log writes it as one JSON line (`to_dict`), and everything that reads a run -- policies (as the
`History`), summary, plot, replay, TensorBoard, the study, the training state -- gets it back
with `from_dict`, which reads every log line and training state written so far.

Everything is JSON-safe plain Python, so a record also goes into BasicSR's training state
(loaded with `torch.load(weights_only=True)`).

What a record keeps is bounded whatever a server answers: every string of its answers, info,
fallback and traceback is cut at `TEXT_LIMIT` characters with its full length noted (`clip_text`),
its prompts together at about `PROMPT_BUDGET`, and the `History` keeps prompts and answers of its
newest record only (the older ones are in the decision log), so memory stays flat over a long run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .weights import check_weights

Score = float | str | None  # a number, a text critique, or None when invalid

TEXT_LIMIT = 16_384  # characters of one answer, error, traceback or info string kept in a record
PROMPT_BUDGET = 8_192  # characters of all the prompt messages of one record together


def clip_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text` itself, or its first and last `limit`/2 characters around a note of how long it was
    (a prompt's newest stages and question, an answer's weights line, are at the end)."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[len(text) - limit // 2 :]
    note = f'[... cut by LossAgent: {len(text):,} characters in all, the first and last {limit // 2:,} kept ...]'
    return f'{head}\n{note}\n{tail}'


def bounded_prompts(prompts: list, budget: int = PROMPT_BUDGET) -> list:
    """The prompts a record keeps: a re-prompt keeps only the messages it added (`earlier_messages`:
    how many it shares with the attempt before), and every message is clipped so that all of them
    together stay near `budget` characters (a full history makes each prompt tens of KB)."""
    out, before = [], {}
    for prompt in prompts:
        if not (isinstance(prompt, dict) and isinstance(prompt.get('messages'), list)):
            out.append(bounded(prompt))
            continue
        prompt, messages = dict(prompt), list(prompt['messages'])
        previous = before.get(prompt.get('image'))
        before[prompt.get('image')] = messages
        if previous and messages[: len(previous)] == previous:
            prompt['earlier_messages'], messages = len(previous), messages[len(previous) :]
        prompt['messages'] = messages
        out.append(prompt)
    count = sum(len(p['messages']) for p in out if isinstance(p, dict) and 'messages' in p) or 1
    limit = max(512, budget // count)
    return [
        {**p, 'messages': [bounded(m, limit) for m in p['messages']]} if isinstance(p, dict) and 'messages' in p else p
        for p in out
    ]


def bounded(value, limit: int = TEXT_LIMIT):
    """`value` (JSON-like: dicts, lists, strings, numbers) with every long string clipped."""
    if isinstance(value, str):
        return clip_text(value, limit)
    if isinstance(value, dict):
        return {k: bounded(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v, limit) for v in value]
    return value


def is_number(value) -> bool:
    """A usable score: a finite int/float (not a bool, not a text critique, not None)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_of_numbers(values) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return sum(numbers) / len(numbers) if numbers else None


@dataclass(frozen=True)
class ExpertInfo:
    """What a policy knows about one expert: its name and which way is better."""

    name: str
    lower_better: bool = False
    kind: str = 'score'  # 'score' (a number per image) or 'text' (a critique per image)
    weight: float = 1.0  # its priority when a policy combines experts into one objective

    @property
    def direction(self) -> str:
        return 'lower is better' if self.lower_better else 'higher is better'

    @property
    def arrow(self) -> str:
        return '↓' if self.lower_better else '↑'

    def to_dict(self) -> dict:
        return {'name': self.name, 'lower_better': self.lower_better, 'kind': self.kind, 'weight': self.weight}


@dataclass
class ProbeResult:
    """One candidate weighting a lookahead policy trained from the boundary's state, and its scores."""

    weights: dict[str, float]
    scores: dict[str, list[Score]]
    valid: bool = True  # False: its training went non-finite or no expert could score it
    objective: float | None = None  # the policy's combined objective (set when it chooses)
    note: str | None = None  # why it is not valid
    eval_s: float | None = None

    def mean_scores(self) -> dict[str, float | None]:
        return {name: mean_of_numbers(values) for name, values in self.scores.items()}

    def as_record(self, boundary: StageRecord) -> StageRecord:
        """The boundary's record with this candidate's scores (what an objective compares)."""
        return replace(boundary, scores=self.scores, weights_before=dict(self.weights), probes=[])

    def to_dict(self) -> dict:
        return {
            'weights': dict(self.weights),
            'scores': {k: list(v) for k, v in self.scores.items()},
            'mean_scores': self.mean_scores(),
            'valid': self.valid,
            'objective': self.objective,
            'note': self.note,
            'eval_s': self.eval_s,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ProbeResult:
        return cls(
            weights={str(k): float(v) for k, v in d['weights'].items()},
            scores={str(k): list(v) for k, v in (d.get('scores') or {}).items()},
            valid=bool(d.get('valid', True)),
            objective=_number_or_none(d.get('objective')),
            note=d.get('note'),
            eval_s=_number_or_none(d.get('eval_s')),
        )


@dataclass
class StageRecord:
    """One stage boundary: the weights trained with up to `iteration`, what the experts said, and
    what the policy decided.

    `scores[expert][i]` is image i's score (None: invalid). Stage 0 is the evaluation before the
    agent changed anything (`policy == 'initial'`). `weights_after` stays None until the decision
    is known; `applied_iteration` is the first iteration trained with it (None: training ended
    before it could be applied).
    """

    stage: int
    iteration: int
    weights_before: dict[str, float]
    scores: dict[str, list[Score]]
    experts: list[ExpertInfo] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    expert_errors: dict[str, str] = field(default_factory=dict)
    policy: str = 'initial'
    fallback: str | None = None  # why the previous weights were kept, if they were
    superseded: bool = False  # written after the iteration a resumed run restarted from
    eval_s: float | None = None  # restoring the images and running the experts
    prompts: list[Any] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    latency_s: float | None = None  # the policy's decision
    info: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None  # when the policy raised
    weights_after: dict[str, float] | None = None
    applied_iteration: int | None = None
    scored_network: str | None = None  # 'ema' or 'net_g': which generator the experts saw
    snapshots: list[int] = field(default_factory=list)  # iterations averaged into `scores` (one: [])
    probes: list[ProbeResult] = field(default_factory=list)  # a lookahead's candidates, the first trained live
    # Who decided `weights_after`: 'policy'; with agent.human_approval 'human' (a person approved or
    # edited `proposed_weights`) or 'timeout' (nobody answered in time: the proposal applied).
    decided_by: str | None = None
    proposed_weights: dict[str, float] | None = None

    # ---- derived ----------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, float]:
        """The weights the network was trained with up to this boundary (what policies compare)."""
        return self.weights_before

    @property
    def decided(self) -> bool:
        return self.policy != 'initial'

    @property
    def valid(self) -> bool:
        return not self.expert_errors

    def num_images(self) -> int:
        return max((len(v) for v in self.scores.values()), default=0)

    def mean_scores(self) -> dict[str, float | None]:
        return {name: mean_of_numbers(values) for name, values in self.scores.items()}

    def numbers(self, expert: str) -> list[float]:
        """The finite scores of one expert (text, None and NaN left out)."""
        return [float(v) for v in self.scores.get(expert, []) if is_number(v)]

    def directions(self) -> dict[str, str]:
        return {e.name: 'lower' if e.lower_better else 'higher' for e in self.experts}

    def expert(self, name: str) -> ExpertInfo | None:
        return next((e for e in self.experts if e.name == name), None)

    def score_experts(self) -> list[ExpertInfo]:
        """Experts whose scores are numbers, in the record's order."""
        return [e for e in self.experts if e.kind != 'text']

    def applied_from(self) -> float:
        """Where this record's `weights_after` start: `applied_iteration`, else the boundary."""
        return float(self.applied_iteration if self.applied_iteration is not None else self.iteration)

    def record_decision(self, decision, names: list[str], traceback: str | None = None) -> dict[str, float]:
        """Take a policy's `Decision` (agent/policies/base.py): its audit trail, and its weights when they
        pass `check_weights`; a fallback, or weights that do not pass, keep `weights_before`.
        Returns the weights to train with from now on."""
        self.policy, self.fallback = decision.policy, bounded(decision.fallback)
        self.prompts, self.answers = bounded_prompts(list(decision.prompts)), bounded(list(decision.answers))
        self.info = bounded(dict(decision.info))
        self.latency_s, self.traceback = decision.latency_s, bounded(traceback)
        self.decided_by = decision.decided_by
        self.proposed_weights = dict(decision.proposed_weights) if decision.proposed_weights is not None else None
        if self.fallback is None:
            problem = check_weights(decision.weights, names)
            if problem:
                self.fallback = f'policy returned unusable weights: {problem}'
        self.weights_after = (
            dict(self.weights_before) if self.fallback else {n: float(decision.weights[n]) for n in names}
        )
        return dict(self.weights_after)

    def compact(self) -> StageRecord:
        """The record without prompts and answers (what the training state keeps in its history)."""
        return replace(self, prompts=[], answers=[])

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The decision-log line; key order is the log's (`mean_scores`, `directions`, `valid` are
        written for readers of the raw JSON and recomputed on reading)."""
        out = {
            'stage': self.stage,
            'iteration': self.iteration,
            'weights_before': dict(self.weights_before),
            'scores': {k: list(v) for k, v in self.scores.items()},
            'mean_scores': self.mean_scores(),
            'directions': self.directions(),
            'experts': [e.to_dict() for e in self.experts],
            'images': list(self.images),
            'valid': self.valid,
            'expert_errors': dict(self.expert_errors),
            'policy': self.policy,
            'fallback': self.fallback,
            'superseded': self.superseded,
            'eval_s': self.eval_s,
        }
        if self.decided:
            out.update(
                prompts=list(self.prompts), answers=list(self.answers), latency_s=self.latency_s, info=dict(self.info)
            )
        if self.traceback is not None:
            out['traceback'] = self.traceback
        out.update(
            weights_after=dict(self.weights_after) if self.weights_after is not None else None,
            applied_iteration=self.applied_iteration,
        )
        if self.scored_network is not None:
            out['scored_network'] = self.scored_network
        if self.snapshots:
            out['snapshots'] = list(self.snapshots)
        if self.probes:
            out['probes'] = [p.to_dict() for p in self.probes]
        if self.decided_by is not None:
            out['decided_by'] = self.decided_by
        if self.proposed_weights is not None:
            out['proposed_weights'] = dict(self.proposed_weights)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> StageRecord:
        """A decision-log line, a training state's history entry (also the older compact form
        `{stage, iteration, weights, scores}`), or a line written before `experts` was logged."""
        weights = d.get('weights_before', d.get('weights'))
        if not isinstance(weights, dict):
            raise ValueError(f'stage record without weights: keys {sorted(d)[:10]}')
        scores = {str(k): list(v) if isinstance(v, list) else [v] for k, v in (d.get('scores') or {}).items()}
        after, proposed = d.get('weights_after'), d.get('proposed_weights')
        return cls(
            stage=int(d['stage']),
            iteration=int(d['iteration']),
            weights_before={str(k): float(v) for k, v in weights.items()},
            scores=scores,
            experts=_experts_of(d, scores),
            images=[str(x) for x in d.get('images') or []],
            expert_errors={str(k): str(v) for k, v in (d.get('expert_errors') or {}).items()},
            policy=str(d.get('policy') or 'initial'),
            fallback=d.get('fallback'),
            superseded=bool(d.get('superseded', False)),
            eval_s=_number_or_none(d.get('eval_s')),
            prompts=list(d.get('prompts') or []),
            answers=list(d.get('answers') or []),
            latency_s=_number_or_none(d.get('latency_s')),
            info=dict(d.get('info') or {}),
            traceback=d.get('traceback'),
            weights_after=_weights_or_none(after),
            applied_iteration=_int_or_none(d.get('applied_iteration')),
            scored_network=d.get('scored_network'),
            snapshots=[int(i) for i in d.get('snapshots') or []],
            probes=[ProbeResult.from_dict(p) for p in d.get('probes') or []],
            decided_by=str(d['decided_by']) if d.get('decided_by') is not None else None,
            proposed_weights=_weights_or_none(proposed),
        )


def _weights_or_none(value) -> dict[str, float] | None:
    return {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else None


def _number_or_none(value) -> float | None:
    return float(value) if is_number(value) else None


def _int_or_none(value) -> int | None:
    return int(value) if is_number(value) else None


def _experts_of(d: dict, scores: dict) -> list[ExpertInfo]:
    """`experts` as logged; older lines have only `directions` (text experts: all-text scores);
    [] when neither was logged."""
    logged = d.get('experts')
    if isinstance(logged, dict):
        logged = [{'name': name, **(spec or {})} for name, spec in logged.items()]
    if isinstance(logged, list) and logged:
        return [
            ExpertInfo(
                str(e['name']),
                bool(e.get('lower_better', False)),
                str(e.get('kind', 'score')),
                float(e.get('weight', 1.0)),
            )
            for e in logged
            if isinstance(e, dict) and 'name' in e
        ]
    directions = d.get('directions') if isinstance(d.get('directions'), dict) else {}
    out = []
    for name in directions:
        values = [v for v in scores.get(name, []) if v is not None]
        text = bool(values) and all(isinstance(v, str) for v in values)
        out.append(ExpertInfo(name, directions.get(name) == 'lower', 'text' if text else 'score'))
    return out


@dataclass
class History:
    """The whole trajectory so far, oldest first."""

    records: list[StageRecord] = field(default_factory=list)

    def append(self, record: StageRecord) -> None:
        """Add the newest record; the one before it keeps no prompts and answers from now on (its
        decision is made and logged; policies read scores, weights and info)."""
        if self.records and (self.records[-1].prompts or self.records[-1].answers):
            self.records[-1] = self.records[-1].compact()
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def last(self) -> StageRecord | None:
        return self.records[-1] if self.records else None

    def to_list(self) -> list[dict]:
        return [r.compact().to_dict() for r in self.records]

    @classmethod
    def from_list(cls, items: list[dict]) -> History:
        return cls([StageRecord.from_dict(d) for d in items])
