"""The paper's three-part prompt (Sec. 3.4, Fig. 6): system, history, customized needs.

The words live in `agent/llm/templates/*.txt` (Python `string.Template`, `$name` variables) so
users can read and edit them; `agent.policy.templates_dir` points at an edited copy (files
missing there fall back to the preset's, then to the built-in ones). Two presets
(`agent.policy.prompt`, differences in docs/agent.md):

- `explicit` (the default): names the task, the losses and each metric ("The NIQE score ...")
  and adds a non-negativity rule;
- `paper`: Figure 6 word for word ("The score ..."; `agent/llm/templates/paper/` holds the files
  that differ), used by the option files that reproduce the paper.

Each part can be switched off for the paper's ablations: `system: false`, `directions: false`
(Table 5: no "lower is better"), `history: full | last_k | none` with `last_k` (Table 6:
{S_i-1, S_i} is last_k: 2), `needs: false`, `format_example: false` (Sec. 4.3: no format example).

Order: with `shared_first` (the `explicit` preset's default) the needs come before the history, so
the prompts of one boundary, one per image, start with the same system and needs text and differ
only from the history on: llama.cpp evaluates the shared start once and reuses it from its KV cache
for the next prompt, and one-prompt boundaries reuse the previous boundary's history too. The
`paper` preset keeps Figure 6's order (history, then needs), and its per-image scores sit in every
history line, so consecutive prompts share only the system part and the history's first words.

A *section* (the hybrid policy's optimizer state, `optimizer.txt`, rendered by `optimizer_part`) is
the same for every image of a boundary. It goes last, after the history, so the question is the last
thing read before the answer; the system and needs parts stay the shared start. With
`section_shared` (and `shared_first`) it goes after the needs instead, before the per-image history,
so it is part of the start the boundary's prompts share and is evaluated once: cheaper, but a weak
model then copies the history's latest weights (measured in docs/agent.md, "hybrid").
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from lossagent_errors import OptionError
from ..record import ExpertInfo, History, StageRecord, is_number

TEMPLATES = Path(__file__).parent / 'templates'

PROMPT_DEFAULTS = {
    'prompt': 'explicit',  # explicit (ours: names task, losses, metrics) | paper (Figure 6 word for word)
    'system': True,  # the system part (role, losses, experts, goal)
    'directions': True,  # say "lower/higher is better" for each expert (Table 5 ablation)
    'history': 'full',  # full | last_k | none (Table 6 ablation)
    'last_k': 2,  # stages shown when history: last_k
    'history_initial': True,  # also show the initial weights and stage-0 score with last_k
    'needs': True,  # the customized needs part (rules)
    'format_example': True,  # the '(for example: L1:Perceptual:GAN=1.0:0.1:0.01)' in rule 1
    'explore_rule': True,  # the paper's rule 3: small random changes when unsure
    'nonneg_rule': None,  # say that weights are non-negative and not all zero (null: the preset's)
    'name_metrics': None,  # "The NIQE score" rather than "The score" (null: the preset's)
    'anchor': False,  # keep the first loss's weight fixed (prompt rule + rescaling)
    'extra_needs': [],  # free-text rules appended to the needs part
    'templates_dir': None,  # a folder with edited copies of agent/llm/templates/*.txt
    'model_noun': None,  # default 'SR model' for super-resolution, else 'restoration model'
    'image_noun': None,  # default 'SR images' / 'restored images'
    'shared_first': None,  # needs before history, so consecutive prompts share their start (null: the preset's)
}
PLACEHOLDER_THOUGHTS = '(The reason you give this weights)'  # the format's Thoughts, in rules.txt
OPTIMIZERS = {'paired': 'paired probes', 'es': 'a (1+1) evolution strategy'}  # optimizer.txt's $strategy
RULE_TAGS = ('format_example', 'explore_rule', 'nonneg_rule', 'anchor')
# what each preset sets: its template folder (files that differ from agent/llm/templates/) and the
# defaults of the options left null. The paper names a metric only when there are several to tell apart.
PRESETS = {
    'explicit': {'folder': None, 'nonneg_rule': True, 'name_metrics': True, 'shared_first': True},
    'paper': {'folder': 'paper', 'nonneg_rule': False, 'name_metrics': False, 'shared_first': False},
}


def resolve_prompt_options(opts: dict) -> dict:
    """A copy of the prompt options with the preset applied and `prompt`, `nonneg_rule`,
    `name_metrics`, `shared_first` checked (the llm policy checks the other keys)."""
    o = dict(opts)
    if o['prompt'] not in PRESETS:
        raise OptionError(f'agent.policy.prompt: got {o["prompt"]!r}; allowed values are {list(PRESETS)}')
    for key in ('nonneg_rule', 'name_metrics', 'shared_first'):
        if o.get(key) is None:
            o[key] = PRESETS[o['prompt']][key]
        elif not isinstance(o[key], bool):
            raise OptionError(f"agent.policy.{key}: got {o[key]!r}; expected true, false or null (the preset's)")
    return o


def fmt(value: float) -> str:
    """4.7087, 0.79286, 1.0 -- five significant digits like the paper's case study."""
    value = float(value)
    return f'{value:.1f}' if value.is_integer() and abs(value) < 1e6 else f'{value:.5g}'


def article(noun: str) -> str:
    """'an SR model', 'a restoration model' (acronyms read by letter name)."""
    acronym = len(noun) > 1 and noun[:2].isupper()
    vowel = noun[:1] in 'AEFHILMNORSX' if acronym else noun[:1].lower() in 'aeiou'
    return f'{"an" if vowel else "a"} {noun}'


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ', '.join(items[:-1]) + ' and ' + items[-1]


class PromptBuilder:
    def __init__(
        self, loss_names: list[str], initial_weights: dict[str, float], experts: list[ExpertInfo], task: str, opts: dict
    ):
        self.loss_names = list(loss_names)
        self.initial = dict(initial_weights)
        self.experts = list(experts)
        self.task = task
        self.o = opts = resolve_prompt_options(opts)
        if opts['history'] not in ('full', 'last_k', 'none'):
            raise OptionError(
                f"agent.policy.history: got {opts['history']!r}; allowed values are ['full', 'last_k', 'none']"
            )
        if not (opts['system'] or opts['history'] != 'none' or opts['needs']):
            raise OptionError('agent.policy.system/history/needs: at least one prompt part must be on')
        sr = 'resolution' in task.lower()
        self.model = opts['model_noun'] or ('SR model' if sr else 'restoration model')
        self.images = opts['image_noun'] or ('SR images' if sr else 'restored images')
        # a single score is "the score" in the paper; several must be told apart by name
        self.named = opts['name_metrics'] or sum(e.kind != 'text' for e in self.experts) > 1
        preset = PRESETS[opts['prompt']]['folder']
        self.preset_dir = TEMPLATES / preset if preset else None
        self.templates = {
            name: self._load(name)
            for name in (
                'system',
                'history',
                'history_recent',
                'history_step',
                'history_probes',
                'needs',
                'rules',
                'reprompt',
                'critique',
                'optimizer',
            )
        }

    # ---------------------------------------------------------------- templates
    def _load(self, name: str) -> Template:
        folder = self.o.get('templates_dir')
        path = Path(folder) / f'{name}.txt' if folder else None
        if folder and not Path(folder).is_dir():
            raise OptionError(f'agent.policy.templates_dir: {folder} is not a folder')
        if (path is None or not path.is_file()) and self.preset_dir is not None:
            path = self.preset_dir / f'{name}.txt'
        if path is None or not path.is_file():
            path = TEMPLATES / f'{name}.txt'
        return Template(path.read_text(encoding='utf-8').rstrip('\n'))

    def _fill(self, name: str, **values) -> str:
        try:
            return self.templates[name].substitute(values)
        except (KeyError, ValueError) as e:  # an edited template names an unknown $variable
            raise OptionError(
                f'agent.policy.templates_dir: template {name}.txt: bad variable {e}; available: {sorted(values)}'
            ) from None

    # ---------------------------------------------------------------- the parts
    def score(self, expert: ExpertInfo) -> str:
        """'NIQE score', or the paper's plain 'score'."""
        return f'{expert.name} score' if self.named else 'score'

    def common(self) -> dict:
        numeric = [e for e in self.experts if e.kind != 'text']
        texts = [e for e in self.experts if e.kind == 'text']
        if self.o['directions'] and numeric:
            # the paper's wording: "a lower score feedback" (Figure 6), "higher score feedback" (Sec. 3.4)
            plain_higher = self.o['prompt'] == 'paper'
            goal = (
                join_words(
                    [
                        ('a lower' if e.lower_better else 'higher' if plain_higher else 'a higher')
                        + f' {self.score(e)}'
                        for e in numeric
                    ]
                )
                + ' feedback'
            )
        elif numeric and self.named:
            goal = 'a better ' + join_words([e.name for e in numeric]) + ' score feedback'
        elif numeric:
            goal = 'a better score feedback'
        else:
            goal = 'better feedback from the ' + join_words([e.name for e in texts]) + ' expert'
        return dict(
            model=self.model,
            a_model=article(self.model),
            images=self.images,
            task=self.task,
            loss_list=join_words([f'{n} loss' for n in self.loss_names]),
            goal=goal,
            format=':'.join(self.loss_names),
            placeholders=':'.join('?' for _ in self.loss_names),
            example=':'.join(fmt(self.initial[n]) for n in self.loss_names),
            count=len(self.loss_names),
            anchor_name=self.loss_names[0],
            anchor_weight=fmt(self.initial[self.loss_names[0]]),
        )

    def system_part(self) -> str:
        sentences = []
        for e in self.experts:
            if e.kind == 'text':
                sentences.append(f'The {e.name} expert describes the quality of each image in words.')
            else:
                sentences.append(f'The {self.score(e)} depicts the overall quality of images.')
                if self.o['directions']:
                    sentences.append(
                        f'The {"lower" if e.lower_better else "higher"} {self.score(e)} stands for better quality.'
                    )
        return self._fill('system', experts=' '.join(sentences), **self.common())

    def history_part(self, history: History, image: int | None) -> str:
        records = list(history)
        if not records:
            return ''
        first, stages = records[0], records[1:]
        shown = stages if self.o['history'] == 'full' else stages[-self.o['last_k'] :]
        with_initial = self.o['history'] == 'full' or self.o['history_initial']
        lines = []
        initial_feedback = self.feedback(first, image, initial=True)
        for record in shown:
            prev = _previous(records, record)  # "Step N" = the iteration these weights started at
            same = [fmt(record.weights.get(n, 0.0)) for n in self.loss_names] == [
                fmt(self.initial[n]) for n in self.loss_names
            ]
            if with_initial and record is stages[0] and same:
                # the paper folds stage 1 (still the initial weights) into the initial line
                initial_feedback += '. ' + self.feedback(record, image)
                continue
            if prev is not None and prev.probes:  # a lookahead tried candidates before choosing these weights
                lines.append(self.probe_part(prev, image))
            lines.append(
                self._fill(
                    'history_step',
                    step=prev.iteration if prev else 0,
                    weights=self.ratio(record.weights),
                    feedback=self.feedback(record, image),
                )
            )
        steps = '\n'.join(lines)
        if with_initial:
            text = self._fill(
                'history',
                initial_weights=self.ratio(self.initial),
                initial_feedback=initial_feedback,
                steps=steps,
                **self.common(),
            )
        else:
            text = self._fill('history_recent', steps=steps, **self.common())
        return text.rstrip()

    def probe_part(self, record: StageRecord, image: int | None) -> str:
        """'From step 100, 3 candidate weights were each trained for 10 steps ...: 1.0:0.5:0.01 gave NIQE 4.1'."""
        numeric = [e for e in self.experts if e.kind != 'text']
        results = []
        for probe in record.probes:
            candidate = probe.as_record(record)
            scores = ', '.join(f'{e.name} {self._value(candidate, e.name, image)}' for e in numeric)
            results.append(f'{self.ratio(probe.weights)} gave {scores if probe.valid else "no usable scores"}')
        iters = record.info.get('probe_iters', '?')
        return self._fill(
            'history_probes', step=record.iteration, count=len(record.probes), iters=iters, results='; '.join(results)
        )

    def needs_part(self) -> str:
        rules = []
        for line in self.templates['rules'].template.splitlines():
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            match = re.match(r'\[(!?)(\w+)\]\s*(.*)', line)
            if match:
                negate, tag, line = match.groups()
                if tag not in RULE_TAGS:
                    raise OptionError(
                        f'agent.policy.templates_dir: rules.txt: unknown tag [{tag}]; known tags are {list(RULE_TAGS)}'
                    )
                if bool(self.o[tag]) == bool(negate):
                    continue
            rules.append(Template(line).safe_substitute(self.common()))
        rules += list(self.o['extra_needs'])
        numbered = '\n'.join(f'{i}. {rule}' for i, rule in enumerate(rules, 1))
        return self._fill('needs', rules=numbered, **self.common())

    def optimizer_part(self, view: dict) -> str:
        """The hybrid policy's section: an offline optimizer's state and proposal (`view`, built by
        agent/policies/hybrid_policy.py) and the question whether to accept, edit or replace it."""
        if view['strategy'] == 'paired':
            pairs = [
                f'{self.direction(p["direction"])}: {p["difference"]:+.3g} (centre moved {p["move"]:+.3g})'
                for p in view['pairs'] or []
            ]
            state = (
                f'centre {self.ratio(view["centre"])}, current direction {self.direction(view["direction"])}, '
                f'step size {fmt(view["step"])} in log-weight units. It trains the centre moved by the step '
                f'along the direction and then against it, and moves the centre toward the better of the two '
                f'by up to {fmt(view["max_move"])}; the proposal is the {view["probe"]} probe of a pair. '
                + (
                    'Differences of its last pairs (objective along minus against the direction, higher is '
                    'better): ' + '; '.join(pairs)
                    if pairs
                    else 'No pair has been measured yet'
                    if view['pairs'] is not None
                    else ''
                )
            ).rstrip('. ')
        else:
            state = (
                f'incumbent {self.ratio(view["incumbent"])} (objective {fmt(view["incumbent_objective"])}, higher '
                f'is better), step size {fmt(view["step"])} in log-weight units. The proposal is the incumbent '
                f'plus a random step of that size; a proposal that beats the incumbent replaces it'
            )
            if view['outcomes'] is not None:
                state += f'. Its last candidates: {", ".join(view["outcomes"]) or "none yet"}'
        return self._fill(
            'optimizer',
            strategy=OPTIMIZERS.get(view['strategy'], view['strategy']),
            state=state,
            proposal=self.ratio(view['proposal']),
            **self.common(),
        )

    def direction(self, signs: dict[str, float]) -> str:
        """'SSIM up, GAN down' for a probe direction {loss: +-1}."""
        return ', '.join(f'{n} {"up" if signs[n] > 0 else "down"}' for n in self.loss_names if n in signs)

    # ---------------------------------------------------------------- messages
    def messages(
        self, history: History, image: int | None = None, section: str | None = None, section_shared: bool = False
    ) -> list[dict]:
        """Chat messages for one image (`image` = its index) or for the mean over images (None); `section`
        (the same for every image) goes last, or with `section_shared` before the history."""
        user = []
        if self.o['history'] != 'none':
            user.append(self.history_part(history, image))
        if self.o['needs']:
            user.insert(0 if self.o['shared_first'] else len(user), self.needs_part())
        if section:
            before_history = section_shared and self.o['shared_first'] and self.o['history'] != 'none'
            user.insert(len(user) - 1 if before_history else len(user), section)
        out = []
        if self.o['system']:
            out.append({'role': 'system', 'content': self.system_part()})
        user = [u for u in user if u]
        if user:
            out.append({'role': 'user', 'content': '\n\n'.join(user)})
        else:  # system only: the chat API needs a user turn
            out.append({'role': 'user', 'content': 'Please give the new loss weights.'})
        return out

    def reprompt(self, messages: list[dict], answer: str, error: str) -> list[dict]:
        """The conversation so far plus the parse error, for one more try."""
        note = self._fill('reprompt', error=error.rstrip('.'), **self.common())
        return list(messages) + [{'role': 'assistant', 'content': answer or ''}, {'role': 'user', 'content': note}]

    def critique_prompt(self) -> str:
        return self._fill('critique', **self.common())

    # ---------------------------------------------------------------- phrases
    def ratio(self, weights: dict[str, float]) -> str:
        return ':'.join(fmt(weights.get(n, 0.0)) for n in self.loss_names)

    def feedback(self, record: StageRecord, image: int | None, initial: bool = False) -> str:
        """'The score of the image at this step is 2.9642' (+ critiques of text experts); the
        templates end it (Figure 6's step lines have no final full stop)."""
        subject = 'the image' if image is not None else 'the images'
        when = 'before training' if initial else 'at this step'
        numeric = [e for e in self.experts if e.kind != 'text']
        parts = []
        values = [(e.name, self._value(record, e.name, image)) for e in numeric]
        if len(values) == 1:
            lead = 'The initial score' if initial else 'The score'
            parts.append(f'{lead} of {subject} {when} is {values[0][1]}')
        elif values:
            lead = 'The initial scores' if initial else 'The scores'
            parts.append(f'{lead} of {subject} {when} are ' + join_words([f'{name} {v}' for name, v in values]))
        for e in self.experts:
            if e.kind == 'text':
                parts.append(f'The {e.name} expert says about {subject} {when}: {self._texts(record, e.name, image)}')
        return '. '.join(parts)

    @staticmethod
    def _value(record: StageRecord, name: str, image: int | None) -> str:
        values = record.scores.get(name, [])
        if image is None:
            numbers = [float(v) for v in values if is_number(v)]
            if not numbers:
                return 'unavailable'
            mean = fmt(sum(numbers) / len(numbers))
            return mean if len(numbers) == 1 else f'{mean} (mean of {len(numbers)} images)'
        value = values[image] if image < len(values) else None
        return fmt(value) if is_number(value) else 'unavailable'

    @staticmethod
    def _texts(record: StageRecord, name: str, image: int | None) -> str:
        def clean(text) -> str:
            return (
                '"' + ' '.join(str(text).split())[:1000] + '"'
                if isinstance(text, str) and text.strip()
                else '(no feedback)'
            )

        values = record.scores.get(name, [])
        if image is not None:
            return clean(values[image] if image < len(values) else None)
        return '; '.join(f'image {i + 1}: {clean(v)}' for i, v in enumerate(values)) or '(no feedback)'


def _previous(records: list[StageRecord], record: StageRecord) -> StageRecord | None:
    index = next(i for i, r in enumerate(records) if r is record)
    return records[index - 1] if index > 0 else None
