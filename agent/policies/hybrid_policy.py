"""The hybrid policy: an offline optimizer proposes, an LLM that sees the optimizer's state reviews.

Classical optimizers beat pure-LLM ones on hyper-parameter search because an LLM tracks an
optimizer's state poorly; handing that state to the LLM makes the hybrid win even with sub-1B
models (Ferreira, Hutter et al. 2026, arXiv 2603.24647). At each boundary:

1. the optimizer -- an `adaptive` policy built from `optimizer:` (strategy `paired` unless set) --
   decides as if alone and gives its proposal;
2. every prompt of the llm policy (one per image, the same options: backend, model_path, prompt,
   structured_output, ...) gets a section with the optimizer's state (centre, direction, step,
   the differences of its last pairs; or incumbent, step, last outcomes for `es`) and its proposal
   (agent/llm/templates/optimizer.txt), and asks to accept, edit or replace it. The section goes
   last, after the history (`state_position: last`): placed before the history, where the prompts
   of a boundary would share it in llama.cpp's KV cache (`shared`), SmolLM2-135M mixed the proposal
   with the history's weights and pulled the optimizer's steps back (none of 9 answers after the
   first boundary accepted); placed last, it accepted the proposal (12 of 12;
   benchmarks/hybrid_prompt_position.py, docs/agent.md);
3. the answers go through the llm policy's parser and aggregation; the aggregate is *accepted*
   when each weight is within `accept_tol` (relative) of the proposal -- the proposal then applies
   exactly, so an LLM that always accepts runs the optimizer's own trajectory -- *edited* when each
   weight is within a factor `edit_factor` of it, *replaced* otherwise;
4. the trust region `max_change` keeps every weight within that factor of the optimizer's proposal
   (`trust_from: proposal`, the default: the optimizer leads and a weak LLM can move its step, not
   undo the search) or of the current weights (`trust_from: current`, the llm policy's rule);
5. an LLM that fails (server down, garbage, too few usable answers) leaves the optimizer's proposal
   in force, not the old weights: `info['llm_fallback']` says why, `Decision.fallback` stays empty.

Whose weights does the optimizer's state follow? The applied ones. The scores at the next boundary
measure what was trained; crediting them to a proposal that was never trained would corrupt the
optimizer's statistics (paired's difference along its direction, es's success rule). So when the
weights trained in the last stage differ from the optimizer's proposal, `AdaptivePolicy.follow`
tells it: `es` scores the trained weights as its candidate anyway, `paired` restarts its pair
around them. An accepting LLM changes nothing, and an LLM's edit moves the search.

`info` records `optimizer_proposal`, `llm_proposal` (the aggregate, before the trust region),
`applied` ('optimizer' or 'llm'), `verdict` (accepted | edited | replaced | fallback), the
per-image `verdicts`, the optimizer's own info, and the llm policy's (answers, compliance, tokens).

With probing, `type: lookahead` with `proposer: hybrid` trains the current weights, the optimizer's
proposal and the LLM's for `probe_iters` each and keeps the best measured one
(agent/policies/lookahead_policy.py), so a weak LLM cannot do worse than its optimizer on the probes.
"""

from __future__ import annotations

import time

from lossagent_errors import OptionError, check_keys

from ..options import choice, nested, number, read_options
from ..record import History
from .adaptive_policy import AdaptivePolicy
from .base import Decision, LossPolicy
from .llm_answers import trust_region
from .llm_policy import LLM_DEFAULTS, LLMPolicy
from .registry import register_policy

HYBRID_DEFAULTS = {
    'optimizer': {},  # the adaptive policy's options (strategy: paired unless set)
    'max_change': 2.0,  # trust region: each weight within this factor of its reference (null: any)
    'trust_from': 'proposal',  # proposal (the optimizer's) | current (the weights in force)
    'accept_tol': 0.05,  # the LLM accepted: each weight within this relative difference of the proposal
    'edit_factor': 2.0,  # ... edited: each weight within this factor of it; farther: replaced
    'show_pairs': 3,  # the optimizer's last pairs (or candidates) shown in the prompt
    'state_position': 'last',  # last (after the history) | shared (before it: evaluated once per boundary)
}
# where the hybrid's LLM defaults differ from the llm policy's: no format example (a weak model copies
# it, and the initial weights would read as a replacement; the proposal is the example to follow); and
# `anchor` follows the optimizer's (the first loss stays at its initial weight when the optimizer keeps it)
LLM_OVERRIDES = {'format_example': False}
VERDICTS = ('accepted', 'edited', 'replaced', 'fallback')


def _split(opt: dict) -> tuple[dict, dict]:
    """The hybrid's own options (checked) and the llm policy's (the rest, with the hybrid's defaults)."""
    # a typo is told against both sets of keys ('api_key' is the llm policy's own refusal)
    check_keys({k: v for k, v in opt.items() if k != 'api_key'}, [*HYBRID_DEFAULTS, *LLM_DEFAULTS], 'agent.policy')
    own = {k: v for k, v in opt.items() if k in HYBRID_DEFAULTS}
    llm = {**LLM_OVERRIDES, **{k: v for k, v in opt.items() if k not in HYBRID_DEFAULTS}}
    o = read_options(own, HYBRID_DEFAULTS)
    if not isinstance(o['optimizer'], dict):
        raise OptionError(f"agent.policy.optimizer: got {o['optimizer']!r}; expected the adaptive policy's options")
    o['optimizer'] = {'strategy': 'paired', **o['optimizer']}
    llm.setdefault('anchor', o['optimizer'].get('anchor', True))  # the LLM keeps what the optimizer keeps
    o['max_change'] = number(o, 'max_change', 1, 1e6, allow_none=True)
    o['trust_from'] = choice(o, 'trust_from', ('proposal', 'current'))
    o['accept_tol'] = number(o, 'accept_tol', 0, 1)
    o['edit_factor'] = number(o, 'edit_factor', 1, 1e6)
    o['show_pairs'] = number(o, 'show_pairs', 0, 100, integer=True)
    o['state_position'] = choice(o, 'state_position', ('last', 'shared'))
    return o, {**llm, 'max_change': None}  # the hybrid applies the trust region, from its reference


def verdict(answer: dict, proposal: dict, tol: float, factor: float) -> str:
    """accepted | edited | replaced: how far `answer` is from `proposal`, weight by weight."""

    def within(a: float, b: float, low: float, high: float) -> bool:
        return a == b if b == 0 else low * b <= a <= high * b

    if all(within(answer[n], w, 1 - tol, 1 + tol) for n, w in proposal.items()):
        return 'accepted'
    if all(within(answer[n], w, 1 / factor, factor) for n, w in proposal.items()):
        return 'edited'
    return 'replaced'


@register_policy('hybrid')
class HybridPolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        self.o, llm_opt = _split(self.opt)
        with nested('optimizer'):
            self.optimizer = AdaptivePolicy(loss_names, initial_weights, experts, self.o['optimizer'], seed, task)
        self.llm = LLMPolicy(loss_names, initial_weights, experts, llm_opt, seed, task)
        self.proposal: dict | None = None  # the optimizer's last proposal (to see whether it was trained)
        self.pairs: list[dict] = []  # the optimizer's last measured pairs (paired) or outcomes (es)
        self.verdicts = dict.fromkeys(VERDICTS, 0)

    @classmethod
    def check_options(cls, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        """Everything the constructor checks, without loading the model or connecting to a server."""
        base = LossPolicy(loss_names, initial_weights, experts, opt, seed, task)
        o, llm_opt = _split(base.opt)
        with nested('optimizer'):
            AdaptivePolicy(loss_names, initial_weights, experts, o['optimizer'], seed, task).close()
        LLMPolicy.check_options(loss_names, initial_weights, experts, llm_opt, seed, task)

    # ------------------------------------------------------------------ one boundary
    def decide(self, history: History, variant: int = 0) -> Decision:
        start = time.monotonic()
        current = self.current_weights(history)
        followed = self._follow(history)
        direction = dict(self.optimizer.u) if self.optimizer.u else None  # the pair a difference measures
        step = self.optimizer.decide(history)
        self.proposal = proposal = dict(step.weights)
        self._remember(step.info, direction)
        info = {'optimizer': step.info, 'optimizer_proposal': proposal, 'followed': followed}
        if step.fallback is not None:  # nothing was measured: there is nothing to review either
            return Decision(weights=proposal, policy=self.name, fallback=step.fallback, info=info)
        section = self.llm.prompts.optimizer_part(self.view(proposal))
        asked = self.llm.decide(history, variant, section, section_shared=self.o['state_position'] == 'shared')
        llm_info = asked.info
        answer = llm_info.get('proposed') if asked.fallback is None else None
        info.update(
            llm_proposal=answer,
            verdicts=self._image_verdicts(llm_info.get('per_image') or [], proposal),
            **{k: v for k, v in llm_info.items() if k not in ('proposed', 'max_change', 'limited')},
        )
        if answer is None:
            kind, weights, limited = 'fallback', proposal, []
            info['llm_fallback'] = asked.fallback
        else:
            kind = verdict(answer, proposal, self.o['accept_tol'], self.o['edit_factor'])
            reference = proposal if self.o['trust_from'] == 'proposal' else current
            weights, limited = (
                (proposal, []) if kind == 'accepted' else trust_region(answer, reference, self.o['max_change'])
            )
        self.verdicts[kind] += 1
        info.update(
            verdict=kind,
            applied='optimizer' if kind in ('accepted', 'fallback') else 'llm',
            trust_from=self.o['trust_from'],
            max_change=self.o['max_change'],
            limited=limited,
            verdict_counts=dict(self.verdicts),
        )
        return Decision(
            weights=weights,
            policy=self.name,
            prompts=asked.prompts,
            answers=asked.answers,
            info=info,
            latency_s=time.monotonic() - start,
        )

    def _follow(self, history: History) -> bool:
        """Tell the optimizer when the last stage trained other weights than its proposal."""
        trained = history.last.weights if history.last is not None else None
        if self.proposal is None or trained is None:
            return False
        if verdict(trained, self.proposal, 1e-6, 1.0) == 'accepted':
            return False
        self.optimizer.follow(trained)
        return True

    def _remember(self, info: dict, direction: dict | None) -> None:
        """The optimizer's last pairs (paired: direction, difference, move) or outcomes (es)."""
        if 'difference' in info and direction:
            self.pairs.append({'direction': direction, 'difference': info['difference'], 'move': info['move']})
        elif self.optimizer.strategy == 'es' and 'outcome' in info:
            self.pairs.append({'outcome': info['outcome']})
        keep = self.o['show_pairs']
        self.pairs = self.pairs[-keep:] if keep else []

    def view(self, proposal: dict) -> dict:
        """What the prompt shows of the optimizer (PromptBuilder.optimizer_part)."""
        opt, search = self.optimizer, self.optimizer.search
        shown = self.pairs if self.o['show_pairs'] else None  # None: the prompt leaves them out
        if opt.strategy == 'paired':
            return {
                'strategy': 'paired',
                'proposal': proposal,
                'centre': search.weights(opt.center),
                'direction': dict(opt.u),
                'step': search.sigma,
                'max_move': opt.max_move,
                'probe': 'first' if opt.phase == 1 else 'second',
                'pairs': shown,
            }
        return {
            'strategy': 'es',
            'proposal': proposal,
            'incumbent': search.weights(opt.best),
            'incumbent_objective': opt.f_best,
            'step': search.sigma,
            'outcomes': [p['outcome'] for p in shown] if shown is not None else None,
        }

    def _image_verdicts(self, per_image: list, proposal: dict) -> dict:
        counts = dict.fromkeys(('accepted', 'edited', 'replaced', 'unusable'), 0)
        for weights in per_image:
            counts[
                verdict(weights, proposal, self.o['accept_tol'], self.o['edit_factor']) if weights else 'unusable'
            ] += 1
        return counts

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        return {
            'optimizer': self.optimizer.state_dict(),
            'llm': self.llm.state_dict(),
            'proposal': self.proposal,
            'pairs': list(self.pairs),
            'verdicts': dict(self.verdicts),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.optimizer.load_state_dict(state.get('optimizer') or {})
        self.llm.load_state_dict(state.get('llm') or {})
        self.proposal = dict(state['proposal']) if state.get('proposal') is not None else None
        self.pairs = [dict(p) for p in state.get('pairs', [])]
        self.verdicts = {**dict.fromkeys(VERDICTS, 0), **state.get('verdicts', {})}

    def close(self) -> None:
        self.llm.close()
