"""The LossAgent policy: ask an LLM for the next loss weights, one prompt per validation image.

At a boundary: render the three-part prompt for each image (its own scores; the paper's
case study shows per-image answers averaged), send them concurrently, parse each answer,
re-prompt once with the parse error when an answer is unusable, and aggregate the valid
ones (mean, median or a trimmed mean), then, with `max_change`, keep each weight within a factor
of its current value (`info['proposed']` keeps what the answers asked for). Any failure --
server down, HTTP errors, timeouts, garbage, too few valid answers, the budget running out --
keeps the previous weights and says why in `Decision.fallback`; `decide` never raises.

A structured-output mode the server cannot honour is refused once, with one line naming the
modes it supports: at start-up when the server answers then (or is started by `serve`), else at
the first boundary, which then sends nothing.

Every decision carries `info['compliance']`, how the answers met the format (its schema is in
agent/policies/llm_answers.py, with the aggregation and the trust region).

`decide(history, section=...)` adds a section to every prompt of the boundary (the hybrid policy's
optimizer state, agent/policies/hybrid_policy.py; where it goes: agent/llm/prompts.py).

With the in-process llama.cpp backend, `info['tokens']` sums the boundary's prompt tokens, those
evaluated (the others came from the KV cache: prompts are ordered so consecutive ones share their
start) and those generated.
"""

from __future__ import annotations

import logging
import math
import time

from lossagent_errors import OptionError
from ..record import History
from .base import Decision, LossPolicy
from .llm_answers import aggregate, compliance, trust_region
from ..llm.client import CLIENT_DEFAULTS, build_client, check_client_options
from ..llm.concurrency import run_concurrently
from ..llm.context import estimate_tokens, fits, overflow_stage, prompt_budget
from ..options import choice, flag, number, pair, read_options, string_list
from ..llm.parser import parse_answer
from ..llm.prompts import PROMPT_DEFAULTS, PromptBuilder
from ..record import StageRecord, clip_text
from .registry import register_policy
from ..llm.serve import OWNED_BY, ManagedServer, check_serve_options
from ..llm.structured import MODES, local_grammar, request_fields, unsupported, weights_regex

logger = logging.getLogger('basicsr')  # BasicSR's run log when training; silent elsewhere

LLM_DEFAULTS = {
    **CLIENT_DEFAULTS,
    **PROMPT_DEFAULTS,
    'structured_output': 'none',  # none | regex | json | response_format | grammar (agent/llm/structured.py)
    'per_image': True,  # one prompt per validation image; false: one prompt, mean scores
    'max_concurrency': 16,  # prompts in flight at once (vLLM batches them)
    'aggregate': 'median',  # mean | median | trimmed (mean without the `trim` share at each end), per loss
    'trim': 0.2,  # aggregate: trimmed: the share of answers dropped at each end
    'max_change': 2.0,  # trust region: each weight moves at most by this factor per decision (null: any)
    'max_thoughts': 100,  # the grammars cap the Thoughts at this many characters (null: no cap)
    'min_valid': 0.5,  # valid answers needed: an int count, or a float fraction of prompts
    'budget_s': 600.0,  # the whole boundary never waits longer; stragglers are abandoned
    'reprompt': True,  # ask once more, with the parse error, when an answer is unusable
    'bounds': [0.0, 100.0],  # accepted range of each weight
    'seed': 'run',  # per-request sampling seed: 'run' (from the run's seed), an int, or null
    'serve': None,  # start the inference server with the run: {engine, model, ...} (agent/llm/serve.py)
}


@register_policy('llm')
class LLMPolicy(LossPolicy):
    def __init__(self, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        super().__init__(loss_names, initial_weights, experts, opt, seed, task)
        self.o = o = self.read_options(self.opt, self.seed, self.experts)
        self.prompts = PromptBuilder(self.loss_names, self.initial_weights, self.experts, task, o)
        # the same prompt with only the latest stages, for when the full history outgrows n_ctx
        self.recent = PromptBuilder(
            self.loss_names,
            self.initial_weights,
            self.experts,
            task,
            {**o, 'history': 'last_k', 'history_initial': True},
        )
        self.calls = 0
        self._variant = 0
        self._section = (None, False)
        self.server = self.client = None
        self.refusal: str | None = None
        self._log_context_projection()
        mode, serve = o['structured_output'], o['serve']
        if serve:
            self.server = ManagedServer(serve, o['model'], o['n_ctx'], o['n_gpu_layers']).start()
            o['base_url'] = self.server.base_url
            logger.info(
                f'Loss agent: started the {serve["engine"]} server (pid {self.server.pid}) at '
                f'{self.server.base_url}; its output goes to {self.server.log_path}'
            )
        try:
            cap = o['max_thoughts']
            self.client = build_client(
                o,
                request_fields(mode, self.loss_names, o['bounds'], cap),
                grammar=local_grammar(mode, self.loss_names, o['bounds'], cap),
            )
            self.owned_by = (
                OWNED_BY[serve['engine']] if serve else self.client.owned_by(timeout=min(5.0, o['timeout_s']))
            )
            problem = unsupported(mode, self.owned_by, o.get('base_url'))
            if problem:
                raise OptionError(problem)
        except BaseException:
            self.close()
            raise

    @classmethod
    def check_options(cls, loss_names, initial_weights, experts, opt=None, seed=0, task='image super-resolution'):
        """Everything the constructor checks, without building the client (a llama.cpp model may be GBs)."""
        base = LossPolicy(loss_names, initial_weights, experts, opt, seed, task)
        o = cls.read_options(base.opt, base.seed, base.experts)
        PromptBuilder(base.loss_names, base.initial_weights, base.experts, task, o)
        if o['serve']:
            problem = unsupported(o['structured_output'], OWNED_BY[o['serve']['engine']], 'the managed server')
            if problem:
                raise OptionError(problem)

    @staticmethod
    def read_options(opt: dict, seed: int, experts) -> dict:
        o = read_options(opt, LLM_DEFAULTS)
        check_client_options(o, needs_url=o['serve'] is None)
        o['serve'] = check_serve_options(o['serve'], o)
        for key in (
            'system',
            'directions',
            'history_initial',
            'needs',
            'format_example',
            'explore_rule',
            'anchor',
            'per_image',
            'reprompt',
        ):
            flag(o, key)
        o['history'] = choice(o, 'history', ('full', 'last_k', 'none'))
        o['last_k'] = number(o, 'last_k', 1, 10**6, integer=True)
        o['extra_needs'] = string_list(o, 'extra_needs')
        o['structured_output'] = choice(o, 'structured_output', MODES)
        o['aggregate'] = choice(o, 'aggregate', ('mean', 'median', 'trimmed'))
        o['trim'] = number(o, 'trim', 0, 0.49)
        o['max_change'] = number(o, 'max_change', 1, 1e6, allow_none=True)
        o['max_thoughts'] = number(o, 'max_thoughts', 1, 1 << 20, integer=True, allow_none=True)
        o['max_concurrency'] = number(o, 'max_concurrency', 1, 1024, integer=True)
        o['budget_s'] = number(o, 'budget_s', 0.01, 10**6)
        o['bounds'] = pair(o, 'bounds')
        if o['bounds'][0] < 0:
            raise OptionError(f'agent.policy.bounds: got {o["bounds"]}; weights cannot be negative')
        try:  # the grammars need a number with at most 6 decimals in bounds that is not zero
            weights_regex(['w'], o['bounds'])
        except ValueError as err:
            raise OptionError(f'agent.policy.bounds: {err}') from None
        mv = o['min_valid']
        if (
            isinstance(mv, bool)
            or not isinstance(mv, (int, float))
            or not ((isinstance(mv, int) and mv >= 1) or (isinstance(mv, float) and 0 < mv <= 1))
        ):
            raise OptionError(
                f'agent.policy.min_valid: got {mv!r}; expected an int >= 1 (a count) '
                'or a float in (0, 1] (a fraction of the prompts)'
            )
        if o['seed'] == 'run':
            o['seed'] = seed
        elif o['seed'] is not None:
            o['seed'] = number(o, 'seed', 0, 2**63, integer=True)
        if not experts:
            raise OptionError('agent.experts: the llm policy needs at least one expert')
        return o

    # ------------------------------------------------------------------ one boundary
    def decide(
        self, history: History, variant: int = 0, section: str | None = None, section_shared: bool = False
    ) -> Decision:
        """`variant` > 0 draws other sampling seeds (a lookahead asks for several proposals); `section` is
        added to every prompt, last or (`section_shared`) before the history (PromptBuilder.messages)."""
        start = time.monotonic()
        previous = self.current_weights(history)
        self.calls += 1
        self._variant = variant
        self._section = (section, section_shared)
        try:
            decision = self._decide(history, previous)
        except Exception as e:  # noqa: BLE001 -- a bug here must not kill a week of training
            decision = Decision(
                weights=previous, policy=self.name, fallback=f'internal error: {type(e).__name__}: {e}'[:300]
            )
        decision.latency_s = time.monotonic() - start
        return decision

    def _decide(self, history: History, previous: dict) -> Decision:
        if history.last is None:
            return Decision(weights=previous, policy=self.name, fallback='empty history')
        refusal = self._first_contact()
        if refusal:
            return Decision(
                weights=previous,
                policy=self.name,
                fallback=refusal,
                info={'structured_output': self.o['structured_output'], 'refused': True},
            )
        n_images = history.last.num_images()
        targets: list[int | None] = list(range(n_images)) if self.o['per_image'] and n_images else [None]
        stage = history.last.stage
        first, shown = self._prompts(history, targets)

        def job(i: int, deadline: float) -> dict:
            return self._ask(first[i], targets[i], stage, deadline)

        results, done = run_concurrently(job, len(targets), self.o['max_concurrency'], self.o['budget_s'])
        prompts, answers, per_image, errors, thoughts, images = [], [], [], [], [], []
        counts = {'ok': 0, 'reprompted': 0, 'recovered': 0, 'failed': 0, 'abandoned': 0}
        tokens = {'prompt': 0, 'evaluated': 0, 'generated': 0}
        for i, (target, result, finished) in enumerate(zip(targets, results, done)):
            broken = not finished or isinstance(result, BaseException)
            if broken:
                why = 'abandoned: boundary budget exhausted' if not finished else f'error: {result!r}'[:300]
                counts['abandoned' if not finished else 'failed'] += 1
                result = {
                    'requests': [{'messages': first[i], 'text': None, 'error': why, 'form': None}],
                    'weights': None,
                    'error': why,
                    'thoughts': None,
                }
            for k, req in enumerate(result['requests']):
                for key in tokens:
                    tokens[key] += req.get('tokens', {}).get(key) or 0
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
            images.append(
                {
                    'image': target,
                    'valid': result['weights'] is not None,
                    'weights': result['weights'],
                    'thoughts': result['thoughts'],
                    'reprompted': len(result['requests']) > 1,
                    'forms': [r['form'] for r in result['requests']],
                    'errors': [r['error'] for r in result['requests']],
                    'answered': any(r['text'] is not None for r in result['requests']),
                }
            )

        valid = [w for w in per_image if w]
        need = self._needed(len(targets))
        info = {
            'targets': targets,
            'per_image': per_image,
            **counts,
            'errors': errors,
            'thoughts': thoughts,
            'need': need,
            'aggregate': self.o['aggregate'],
            'model': self.o['model'],
            'structured_output': self.o['structured_output'],
            'compliance': compliance(images, previous, self.initial_weights, self.loss_names),
            'prompt_tokens': max(estimate_tokens(m) for m in first),
        }
        if self.o['backend'] == 'llamacpp':
            info['tokens'] = tokens
        if shown is not None:
            info['history_shown'] = shown
        decision = Decision(weights=previous, policy=self.name, prompts=prompts, answers=answers, info=info)
        if len(valid) < need:
            reasons = sorted({e for e in errors if e})
            decision.fallback = (
                f'{len(valid)} of {len(targets)} answers usable, need {need}'
                + (f'; e.g. {reasons[0]}' if reasons else '')
            )[:400]
            return decision
        proposed = self._aggregate(valid)
        decision.weights, limited = trust_region(proposed, previous, self.o['max_change'])
        info.update(proposed=proposed, max_change=self.o['max_change'], limited=limited)
        return decision

    def _first_contact(self) -> str | None:
        """The refusal of a mode this server cannot honour, learned when it first answers."""
        if self.refusal is None and self.owned_by is None:
            self.owned_by = self.client.owned_by(timeout=min(5.0, self.o['timeout_s']))
            self.refusal = unsupported(self.o['structured_output'], self.owned_by, self.o.get('base_url'))
            if self.refusal:
                logger.warning(f'Loss agent: {self.refusal}; no prompt is sent until the option is changed')
        return self.refusal

    def _prompts(self, history: History, targets: list) -> tuple[list[list[dict]], dict | None]:
        """The first prompt of each target; when the full history outgrows n_ctx, only the latest stages
        that fit are shown (as `history: last_k`), and how many is returned."""
        first = [self.prompts.messages(history, t, *self._section) for t in targets]
        stages = len(history) - 1
        if all(fits(m, self.o) for m in first) or stages <= 1:
            return first, None
        low, high = 1, stages - 1  # the most stages whose prompts still fit (at least 1)
        while low < high:
            self.recent.o['last_k'] = (low + high + 1) // 2
            if all(fits(self.recent.messages(history, t, *self._section), self.o) for t in targets):
                low = self.recent.o['last_k']
            else:
                high = self.recent.o['last_k'] - 1
        self.recent.o['last_k'] = low
        first = [self.recent.messages(history, t, *self._section) for t in targets]
        if not self._trim_reported:
            self._trim_reported = True
            logger.warning(
                f'Loss agent: at stage {history.last.stage} the full history no longer fits '
                f'agent.policy.n_ctx={self.o["n_ctx"]} (with max_tokens={self.o["max_tokens"]} for the '
                f'answer); from now on the prompt shows the initial stage and the latest stages that fit '
                f'({low} of {stages} now), as history: last_k would'
            )
        return first, {'stages': stages, 'shown': low}

    def _ask(self, messages: list[dict], image: int | None, stage: int, deadline: float) -> dict:
        """One image: ask, parse, maybe re-ask once with the error. Runs in a worker thread."""
        out = {'requests': [], 'weights': None, 'error': None, 'thoughts': None}
        for attempt in range(2 if self.o['reprompt'] else 1):
            seed = self._seed(stage, image, attempt)
            reply = self.client.chat(messages, deadline=deadline, seed=seed)
            request = {
                'messages': messages,
                'text': reply.text,
                'error': reply.error,
                'form': None,
                'tokens': {
                    'prompt': reply.prompt_tokens,
                    'evaluated': reply.evaluated_tokens,
                    'generated': reply.generated_tokens,
                },
            }
            out['requests'].append(request)
            if reply.text is None:  # the server failed even after retries: re-asking won't help
                out['error'] = reply.error
                return out
            parsed = parse_answer(reply.text, self.loss_names, self.o['bounds'])
            weights, error = self._anchored(parsed.weights) if parsed.ok else (None, parsed.error)
            out['thoughts'] = parsed.thoughts
            if weights:
                request['form'] = parsed.form
                out['weights'], out['error'] = weights, None
                return out
            out['error'] = request['error'] = f'rejected: {error}'
            messages = self.prompts.reprompt(messages, clip_text(reply.text), error)  # a 2 MB answer is not sent back
        return out

    def _log_context_projection(self) -> None:
        """At start-up: where a full history will stop fitting n_ctx (estimated; see agent/llm/context.py)."""
        self._trim_reported = False
        if self.o['history'] != 'full':
            return
        values = [round(0.12345 * (i + 1), 5) for i in range(len(self.loss_names))]

        def tokens_at(stages: int) -> int:
            records = [
                StageRecord(k, 5000 * k, dict(zip(self.loss_names, values)), {e.name: [4.7087] for e in self.experts})
                for k in range(stages + 1)
            ]
            return estimate_tokens(self.prompts.messages(History(records), 0 if self.o['per_image'] else None))

        first, per_stage, stage = overflow_stage(tokens_at, prompt_budget(self.o))
        if stage is None:
            return
        line = (
            f'Loss agent: the prompt is ~{first} tokens at stage 1 and grows by ~{per_stage:.0f} per stage '
            f'(history: full); with max_tokens={self.o["max_tokens"]} it reaches n_ctx={self.o["n_ctx"]} at '
            f'stage ~{stage}, after which only the latest stages that fit are shown'
        )
        (logger.warning if stage <= 100 else logger.info)(line)

    # ------------------------------------------------------------------ helpers
    def _anchored(self, weights: dict) -> tuple[dict | None, str | None]:
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
        return {
            n: float(f'{aggregate([w[n] for w in valid], self.o["aggregate"], self.o["trim"]):.6g}')
            for n in self.loss_names
        }

    def _needed(self, count: int) -> int:
        mv = self.o['min_valid']
        return min(count, mv) if isinstance(mv, int) else max(1, math.ceil(mv * count - 1e-9))

    def _seed(self, stage: int, image: int | None, attempt: int) -> int | None:
        """Reproducible sampling per (run seed, stage, image, attempt); same on resume and replay."""
        if self.o['seed'] is None:
            return None
        variant = self._variant * 7_919
        return (self.o['seed'] * 1_000_003 + stage * 10_007 + ((image or 0) + 1) * 101 + attempt + variant) % (2**31)

    def state_dict(self) -> dict:
        return {'calls': self.calls}  # the seeds depend on the stage only: nothing else to restore

    def load_state_dict(self, state: dict) -> None:
        self.calls = int((state or {}).get('calls', 0))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.stop()
