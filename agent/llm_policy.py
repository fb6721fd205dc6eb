"""The LossAgent policy: ask an LLM for the next loss weights, one prompt per validation image.

At a boundary: render the three-part prompt for each image (its own scores; the paper's
case study shows per-image answers averaged), send them concurrently, parse each answer,
re-prompt once with the parse error when an answer is unusable, and aggregate the valid
ones (mean or median). Any failure -- server down, HTTP errors, timeouts, garbage, too few
valid answers, the budget running out -- keeps the previous weights and says why in
`Decision.fallback`; `decide` never raises.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Optional

from lossagent_errors import OptionError
from .record import History
from .policy import Decision, LossPolicy
from .client import CLIENT_DEFAULTS, build_client, check_client_options
from .concurrency import run_concurrently
from .options import choice, flag, number, pair, read_options, string_list
from .parser import parse_answer
from .prompts import PROMPT_DEFAULTS, PromptBuilder
from .registry import register_policy
from .structured import MODES, request_fields

LLM_DEFAULTS = {
    **CLIENT_DEFAULTS,
    **PROMPT_DEFAULTS,
    'structured_output': 'none',  # none | regex | json | response_format (see agent/structured.py)
    'per_image': True,            # one prompt per validation image; false: one prompt, mean scores
    'max_concurrency': 16,        # prompts in flight at once (vLLM batches them)
    'aggregate': 'mean',          # mean | median of the valid per-image answers, per loss
    'min_valid': 0.5,             # valid answers needed: an int count, or a float fraction of prompts
    'budget_s': 600.0,            # the whole boundary never waits longer; stragglers are abandoned
    'reprompt': True,             # ask once more, with the parse error, when an answer is unusable
    'bounds': [0.0, 100.0],       # accepted range of each weight
    'seed': 'run',                # per-request sampling seed: 'run' (from the run's seed), an int, or null
}


@register_policy('llm')
class LLMPolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        self.o = o = self.read_options(self.opt, self.seed, self.experts)
        self.prompts = PromptBuilder(self.loss_names, self.initial_weights, self.experts, task, o)
        self.client = build_client(o, request_fields(o['structured_output'], self.loss_names, o['bounds']))
        self.calls = 0

    @classmethod
    def check_options(cls, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        """Everything the constructor checks, without building the client (a llama.cpp model may be GBs)."""
        base = LossPolicy(loss_names, initial_weights, experts, opt, seed, task)
        o = cls.read_options(base.opt, base.seed, base.experts)
        PromptBuilder(base.loss_names, base.initial_weights, base.experts, task, o)

    @staticmethod
    def read_options(opt: dict, seed: int, experts) -> dict:
        o = read_options(opt, LLM_DEFAULTS)
        check_client_options(o)
        for key in ('system', 'directions', 'history_initial', 'needs', 'format_example', 'explore_rule',
                    'anchor', 'per_image', 'reprompt'):
            flag(o, key)
        o['history'] = choice(o, 'history', ('full', 'last_k', 'none'))
        o['last_k'] = number(o, 'last_k', 1, 10 ** 6, integer=True)
        o['extra_needs'] = string_list(o, 'extra_needs')
        o['structured_output'] = choice(o, 'structured_output', MODES)
        o['aggregate'] = choice(o, 'aggregate', ('mean', 'median'))
        o['max_concurrency'] = number(o, 'max_concurrency', 1, 1024, integer=True)
        o['budget_s'] = number(o, 'budget_s', 0.01, 10 ** 6)
        o['bounds'] = pair(o, 'bounds')
        if o['bounds'][0] < 0:
            raise OptionError(f"agent.policy.bounds: got {o['bounds']}; weights cannot be negative")
        mv = o['min_valid']
        if isinstance(mv, bool) or not isinstance(mv, (int, float)) or not (
                (isinstance(mv, int) and mv >= 1) or (isinstance(mv, float) and 0 < mv <= 1)):
            raise OptionError(f'agent.policy.min_valid: got {mv!r}; expected an int >= 1 (a count) '
                              'or a float in (0, 1] (a fraction of the prompts)')
        if o['seed'] == 'run':
            o['seed'] = seed
        elif o['seed'] is not None:
            o['seed'] = number(o, 'seed', 0, 2 ** 63, integer=True)
        if not experts:
            raise OptionError('agent.experts: the llm policy needs at least one expert')
        return o

    # ------------------------------------------------------------------ one boundary
    def decide(self, history: History) -> Decision:
        start = time.monotonic()
        previous = self.current_weights(history)
        self.calls += 1
        try:
            decision = self._decide(history, previous)
        except Exception as e:  # noqa: BLE001 -- a bug here must not kill a week of training
            decision = Decision(weights=previous, policy=self.name,
                                fallback=f'internal error: {type(e).__name__}: {e}'[:300])
        decision.latency_s = time.monotonic() - start
        return decision

    def _decide(self, history: History, previous: dict) -> Decision:
        if history.last is None:
            return Decision(weights=previous, policy=self.name, fallback='empty history')
        n_images = history.last.num_images()
        targets: list[Optional[int]] = list(range(n_images)) if self.o['per_image'] and n_images else [None]
        stage = history.last.stage
        first = [self.prompts.messages(history, t) for t in targets]

        def job(i: int, deadline: float) -> dict:
            return self._ask(first[i], targets[i], stage, deadline)

        results, done = run_concurrently(job, len(targets), self.o['max_concurrency'], self.o['budget_s'])
        prompts, answers, per_image, errors, thoughts = [], [], [], [], []
        counts = {'ok': 0, 'reprompted': 0, 'recovered': 0, 'failed': 0, 'abandoned': 0}
        for i, (target, result, finished) in enumerate(zip(targets, results, done)):
            broken = not finished or isinstance(result, BaseException)
            if broken:
                why = 'abandoned: boundary budget exhausted' if not finished else f'error: {result!r}'[:300]
                counts['abandoned' if not finished else 'failed'] += 1
                result = {'requests': [{'messages': first[i], 'text': None, 'error': why}],
                          'weights': None, 'error': why, 'thoughts': None}
            for k, req in enumerate(result['requests']):
                prompts.append({'image': target, 'attempt': k, 'messages': req['messages']})
                answers.append({'image': target, 'attempt': k, 'text': req['text'], 'error': req['error']})
            if not broken:
                again = len(result['requests']) > 1
                counts['reprompted'] += again
                counts['recovered'] += again and result['weights'] is not None
                counts['ok' if result['weights'] else 'failed'] += 1
            per_image.append(result['weights'])
            errors.append(result['error'])
            thoughts.append(result['thoughts'])

        valid = [w for w in per_image if w]
        need = self._needed(len(targets))
        info = {'targets': targets, 'per_image': per_image, **counts, 'errors': errors, 'thoughts': thoughts,
                'need': need, 'aggregate': self.o['aggregate'], 'model': self.o['model'],
                'structured_output': self.o['structured_output']}
        decision = Decision(weights=previous, policy=self.name, prompts=prompts, answers=answers, info=info)
        if len(valid) < need:
            reasons = sorted({e for e in errors if e})
            decision.fallback = (f'{len(valid)} of {len(targets)} answers usable, need {need}'
                                 + (f'; e.g. {reasons[0]}' if reasons else ''))[:400]
            return decision
        decision.weights = self._aggregate(valid)
        return decision

    def _ask(self, messages: list[dict], image: Optional[int], stage: int, deadline: float) -> dict:
        """One image: ask, parse, maybe re-ask once with the error. Runs in a worker thread."""
        out = {'requests': [], 'weights': None, 'error': None, 'thoughts': None}
        for attempt in range(2 if self.o['reprompt'] else 1):
            seed = self._seed(stage, image, attempt)
            reply = self.client.chat(messages, deadline=deadline, seed=seed)
            out['requests'].append({'messages': messages, 'text': reply.text, 'error': reply.error})
            if reply.text is None:  # the server failed even after retries: re-asking won't help
                out['error'] = reply.error
                return out
            parsed = parse_answer(reply.text, self.loss_names, self.o['bounds'])
            weights, error = (self._anchored(parsed.weights) if parsed.ok else (None, parsed.error))
            out['thoughts'] = parsed.thoughts
            if weights:
                out['weights'], out['error'] = weights, None
                return out
            out['error'] = f'rejected: {error}'
            out['requests'][-1]['error'] = out['error']
            messages = self.prompts.reprompt(messages, reply.text, error)
        return out

    # ------------------------------------------------------------------ helpers
    def _anchored(self, weights: dict) -> tuple[Optional[dict], Optional[str]]:
        """With `anchor: true` rescale so the first loss keeps its initial weight."""
        if not self.o['anchor']:
            return weights, None
        first = self.loss_names[0]
        if weights[first] <= 0:
            return None, f'the anchor {first} must keep a positive weight'
        scale = self.initial_weights[first] / weights[first]
        scaled = {n: v * scale for n, v in weights.items()}
        low, high = self.o['bounds']
        bad = [n for n, v in scaled.items() if not low <= v <= high]
        if bad:
            return None, f'{bad[0]} is outside [{low:g}, {high:g}] once {first} is kept at its anchor weight'
        return scaled, None

    def _aggregate(self, valid: list[dict]) -> dict:
        combine = statistics.median if self.o['aggregate'] == 'median' else statistics.fmean
        return {n: float(f'{combine([w[n] for w in valid]):.6g}') for n in self.loss_names}

    def _needed(self, count: int) -> int:
        mv = self.o['min_valid']
        return min(count, mv) if isinstance(mv, int) else max(1, math.ceil(mv * count - 1e-9))

    def _seed(self, stage: int, image: Optional[int], attempt: int) -> Optional[int]:
        """Reproducible sampling per (run seed, stage, image, attempt); same on resume and replay."""
        if self.o['seed'] is None:
            return None
        return (self.o['seed'] * 1_000_003 + stage * 10_007 + ((image or 0) + 1) * 101 + attempt) % (2 ** 31)

    def state_dict(self) -> dict:
        return {'calls': self.calls}  # the seeds depend on the stage only: nothing else to restore

    def load_state_dict(self, state: dict) -> None:
        self.calls = int((state or {}).get('calls', 0))

    def close(self) -> None:
        self.client.close()
