"""Who sits the decision exam: a list of option dicts, each built with `agent.build_policy`.

The list is data, not code: a policy joins by an entry here, and the `hybrid` entry is taken only
when a policy of that type is registered (agent.policies.registry.POLICY_REGISTRY), so it joins
once merged without a change here. `keep` (the current weights) is the exam's reference and is no
registered policy: the `fixed` policy keeps the *initial* weights, not the current ones.

The llm entries use one prompt per boundary (`per_image: false`): per-image prompts cost 84-450 s
a boundary with the embedded model on this CPU (docs/agent.md, "The embedded model's cost"), one
prompt 3-10 s. The Thoughts are capped at `THOUGHTS` characters: under a grammar the weights come
first, so what follows them cannot change them, only the time spent writing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent import History, build_policy
from agent.policies.registry import POLICY_REGISTRY
from lossagent_errors import OptionError

RUN_POLICY = {'type': 'adaptive', 'strategy': 'paired', 'sigma': 0.5, 'max_move': 0.5}  # the state runs' policy

THOUGHTS = 16  # characters of Thoughts the grammar allows after the weights (they come first)


@dataclass(frozen=True)
class Entry:
    label: str
    opt: dict | None  # agent.policy options; None: keep the current weights
    note: str = ''
    reading: bool = True  # also sits the reading test
    ablation: bool = False  # a prompt ablation
    cut: bool = False  # left out by default to fit the time budget (--ablations adds it)
    alternatives: tuple = field(default_factory=tuple)  # other option dicts to try when `opt` is refused


def llm_options(base_url: str | None = None, model: str | None = None, threads: int = 1, mode: str | None = None):
    """The llm policy's options: the embedded SmolLM2 in-process, or any OpenAI-compatible endpoint."""
    common = {'per_image': False, 'max_thoughts': THOUGHTS, 'max_tokens': 96, 'max_concurrency': 1}
    if base_url:
        return {
            'type': 'llm',
            'base_url': base_url,
            **({'model': model} if model else {}),
            'structured_output': mode or 'regex',
            **common,
        }
    return {
        'type': 'llm',
        'backend': 'llamacpp',
        'model_path': model or 'embedded',
        'structured_output': mode or 'grammar',
        'n_threads': threads,
        'n_ctx': 4096,
        **common,
    }


def exam_entries(llm: dict) -> list[Entry]:
    """The exam's policies in table order; `llm` is `llm_options(...)`."""
    paper, explicit = {**llm, 'prompt': 'paper'}, {**llm, 'prompt': 'explicit'}
    entries = [
        Entry('keep', None, 'the current weights (the reference of every gain)'),
        Entry('random', {'type': 'random'}, "the paper's Random: initial x U(0.5, 1.5)"),
        Entry('adaptive-es', {'type': 'adaptive', 'strategy': 'es'}, '(1+1)-ES on the stage objective'),
        Entry(
            'adaptive-paired',
            dict(RUN_POLICY),
            "antithetic probes; the demo's own policy (same seed: it retraces the run's decisions)",
        ),
        Entry('llm-paper', paper, "Figure 6's prompt"),
        Entry('llm-explicit', explicit, 'our prompt (names the task, losses and metric)'),
        Entry(
            'llm-paper-no-history',
            {**paper, 'history': 'none'},
            'ablation: no trajectory shown',
            ablation=True,
            reading=False,
        ),
        Entry(
            'llm-paper-no-directions',
            {**paper, 'directions': False},
            "ablation: neither the direction nor the metric named (Table 5); the reading test's control",
            ablation=True,
            reading=True,
        ),
        Entry(
            'llm-explicit-no-history',
            {**explicit, 'history': 'none'},
            'ablation: no trajectory shown',
            ablation=True,
            reading=False,
        ),
        Entry(
            'llm-explicit-no-directions',
            {**explicit, 'directions': False},
            'ablation: no direction (NIQE still named)',
            ablation=True,
            reading=False,
        ),
    ]
    if 'hybrid' in POLICY_REGISTRY:  # the optimizer is the demo's paired search, reviewed by the same llm
        bare = {k: v for k, v in llm.items() if k != 'type'}
        paired = {k: v for k, v in RUN_POLICY.items() if k != 'type'}
        entries.append(
            Entry(
                'hybrid',
                {'type': 'hybrid', 'optimizer': paired, **bare},
                "adaptive-paired's proposal, reviewed by the llm that sees its state",
                alternatives=({'type': 'hybrid', 'llm': bare}, {'type': 'hybrid'}),
            )
        )
    return entries


def select(entries: list[Entry], names: list[str] | None, ablations: bool) -> list[Entry]:
    """The entries named (by default all but those cut for time, which `ablations` adds)."""
    if names:
        known = {e.label for e in entries}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f'exam: --policies: unknown {unknown}; known: {sorted(known)}')
        return [e for e in entries if e.label in names]
    return [e for e in entries if ablations or not e.cut]


class Sitter:
    """One policy instance answering a sequence of histories (one seed's boundaries in order, so a
    stateful policy carries its state from one to the next, as in a run)."""

    def __init__(self, entry: Entry, loss_names, initial, experts, seed: int, task: str):
        self.entry = entry
        self.policy = None
        self.refused: str | None = None
        if entry.opt is None:
            return
        errors = []
        for opt in (entry.opt, *entry.alternatives):
            try:
                self.policy = build_policy(opt, loss_names, initial, experts, seed=seed, task=task)
                return
            except OptionError as err:
                errors.append(str(err))
        self.refused = '; '.join(errors)

    def propose(self, history: History) -> dict:
        """What the policy answers now: weights, fallback, wall time, compliance figures."""
        current = dict(history.last.weights)
        if self.policy is None:
            return {'weights': current, 'fallback': self.refused, 'latency_s': 0.0}
        started = time.perf_counter()
        decision = self.policy.decide(History(list(history.records)))
        out = {
            'weights': {n: float(v) for n, v in decision.weights.items()},
            'fallback': decision.fallback,
            'latency_s': round(time.perf_counter() - started, 3),
        }
        c = decision.info.get('compliance')
        if c:
            out['compliance'] = {k: c.get(k) for k in ('prompts', 'first_valid', 'valid', 'repeats_example')}
        if decision.info.get('tokens'):
            out['tokens'] = decision.info['tokens']
        return out

    def close(self) -> None:
        if self.policy is not None:
            self.policy.close()
