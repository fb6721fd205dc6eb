"""Golden tests of the rendered prompts (tests/golden/agent/*.txt).

`prompt: paper` is checked against Figure 6 of the paper (tests/golden/agent/figure6.txt: the
figure's text with the PDF's line wrapping undone, never regenerated); the others are ours.

Regenerate after an intended template change with
    LOSSAGENT_UPDATE_GOLDEN=1 pytest tests/test_agent_prompts.py
and review the diff.
"""

import os
from pathlib import Path

import pytest

from lossagent_errors import OptionError
from agent.record import ExpertInfo, History, StageRecord
from agent.llm.prompts import PROMPT_DEFAULTS, PromptBuilder

GOLDEN = Path(__file__).parent / 'golden' / 'agent'
N = ['L1', 'Perceptual', 'GAN']
INIT = {'L1': 1.0, 'Perceptual': 0.1, 'GAN': 0.01}


def paper_history(extra_experts=None):
    """The paper's Fig. 6 case study (NIQE, 25000 iterations), image 0; image 1 has other scores."""
    h = History(
        [
            StageRecord(0, 0, dict(INIT), {'NIQE': [4.7087, 5.1]}),
            StageRecord(1, 5000, dict(INIT), {'NIQE': [2.9642, 3.3]}),
        ]
    )
    steps = [
        ((0.79286, 0.20714, 0.0575), 2.5495),
        ((0.79286, 0.1875, 0.055), 2.7706),
        ((0.78214, 0.18393, 0.06286), 2.8586),
        ((0.72857, 0.21786, 0.07036), 2.705),
    ]
    for k, (w, s) in enumerate(steps, 2):
        h.append(StageRecord(k, 5000 * k, dict(zip(N, w)), {'NIQE': [s, None]}))
    if extra_experts:
        for r in h:
            r.scores.update(extra_experts(r.stage))
    return h


def render(experts, hist, image=0, **opts):
    o = dict(PROMPT_DEFAULTS, **opts)
    b = PromptBuilder(N, INIT, experts, 'image super-resolution', o)
    return '\n\n'.join(f'=== {m["role"]}\n{m["content"]}' for m in b.messages(hist, image)) + '\n'


def check(name, text):
    path = GOLDEN / f'{name}.txt'
    if os.environ.get('LOSSAGENT_UPDATE_GOLDEN'):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding='utf-8')
    assert text == path.read_text(encoding='utf-8'), f'{path} differs; see the module docstring'


NIQE = [ExpertInfo('NIQE', lower_better=True)]


def test_paper_case_study():
    text = render(NIQE, paper_history())
    check('paper_case_study', text)
    # the sentences of the paper's Fig. 6, verbatim
    assert (
        'Initial loss weights of L1 loss, Perceptual loss and GAN loss is 1.0:0.1:0.01. The initial score '
        'of the image before training is 4.7087. The score of the image at this step is 2.9642.' in text
    )
    assert 'Step 5000 weights is 0.79286:0.20714:0.0575. The score of the image at this step is 2.5495' in text
    assert (
        "1. The output should in format 'Weights: L1:Perceptual:GAN=?:?:? (for example: "
        "L1:Perceptual:GAN=1.0:0.1:0.01)' 'Thoughts: (The reason you give this weights)'." in text
    )
    assert 'The lower NIQE score stands for better quality.' in text


def test_image_index_and_mean_mode():
    second = render(NIQE, paper_history(), image=1)
    assert 'before training is 5.1.' in second and 'at this step is unavailable' in second
    check('mean_over_images', render(NIQE, paper_history(), image=None))


def test_ablations():
    check('no_directions', render(NIQE, paper_history(), directions=False))
    check('last_k_2', render(NIQE, paper_history(), history='last_k', last_k=2, history_initial=False))
    check(
        'no_history_no_example', render(NIQE, paper_history(), history='none', format_example=False, explore_rule=False)
    )
    no_system = render(NIQE, paper_history(), system=False)
    assert '=== system' not in no_system and no_system.startswith('=== user')
    assert '=== user' not in render(NIQE, paper_history(), history='none', needs=False).split('=== system')[0]


def test_double_objective_text_expert_and_needs():
    def more(stage):
        return {'PSNR': [24.0 + stage, 25.0], 'Critic': [f'stage {stage}: slightly blurry\ntextures', None]}

    experts = NIQE + [ExpertInfo('PSNR', lower_better=False), ExpertInfo('Critic', kind='text')]
    text = render(
        experts,
        paper_history(more),
        anchor=True,
        extra_needs=['Keep the GAN weight below 0.1.', 'Prefer smooth changes.'],
    )
    check('double_objective_text_anchor', text)
    assert 'a lower NIQE score and a higher PSNR score feedback' in text
    assert 'The Critic expert says about the image at this step: "stage 3: slightly blurry textures".' in text
    assert '7. Prefer smooth changes.' in text


def test_templates_dir_override(tmp_path):
    (tmp_path / 'system.txt').write_text('You tune $loss_list for $task. Goal: $goal.')
    (tmp_path / 'rules.txt').write_text('# mine\n[anchor] anchor $anchor_name\nBe brief.\n')
    text = render(NIQE, paper_history(), templates_dir=str(tmp_path))
    assert 'You tune L1 loss, Perceptual loss and GAN loss for image super-resolution. Goal: a lower NIQE' in text
    assert '1. Be brief.' in text and 'Step 5000' in text  # other templates fall back to the built-in ones
    (tmp_path / 'needs.txt').write_text('$nonsense')
    with pytest.raises(OptionError, match='agent.policy.templates_dir'):
        render(NIQE, paper_history(), templates_dir=str(tmp_path))
    with pytest.raises(OptionError, match='templates_dir'):
        render(NIQE, paper_history(), templates_dir=str(tmp_path / 'missing'))


def test_bad_options():
    with pytest.raises(OptionError, match="agent.policy.history: got 'some'"):
        render(NIQE, paper_history(), history='some')
    with pytest.raises(OptionError, match='at least one prompt part'):
        render(NIQE, paper_history(), system=False, history='none', needs=False)


# ------------------------------------------------------------------------- prompt: paper (Figure 6)


def figure6() -> dict:
    """The three boxes of Figure 6: {'System Prompt': ..., 'Historical Prompt': ..., 'Customized Needs Prompt': ...}."""
    parts = (GOLDEN / 'figure6.txt').read_text(encoding='utf-8').strip().split('\n\n')
    return dict(part.split('\n', 1) for part in parts)


def test_paper_preset_is_figure_6_word_for_word():
    o = dict(PROMPT_DEFAULTS, prompt='paper')
    messages = PromptBuilder(N, INIT, NIQE, 'image super-resolution', o).messages(paper_history(), 0)
    fig = figure6()
    assert [m['role'] for m in messages] == ['system', 'user']
    assert messages[0]['content'] == fig['System Prompt']
    history, needs = messages[1]['content'].split('\n\n')
    assert history == fig['Historical Prompt']
    assert needs == fig['Customized Needs Prompt']


def test_paper_preset_table5_withholds_direction_and_name():
    text = render(NIQE, paper_history(), prompt='paper', directions=False)
    check('paper_no_directions', text)
    assert 'NIQE' not in text and 'lower' not in text and 'higher' not in text
    assert 'Your ultimate goal is to help the SR model achieve a better score feedback.' in text
    # the explicit preset's Table 5 switch withholds the direction only
    assert 'a better NIQE score feedback' in render(NIQE, paper_history(), directions=False)


def test_paper_preset_higher_is_better_goal_follows_section_3_4():
    # Sec. 3.4: "Your ultimate goal is to help the SR model achieve higher score feedback."
    text = render([ExpertInfo('MANIQA', lower_better=False)], paper_history(), prompt='paper')
    assert 'Your ultimate goal is to help the SR model achieve higher score feedback.' in text
    assert 'achieve a higher' not in text
    assert 'achieve a higher MANIQA score feedback' in render(
        [ExpertInfo('MANIQA', lower_better=False)], paper_history()
    )  # explicit preset: unchanged


def test_paper_preset_options():
    two = NIQE + [ExpertInfo('PSNR', lower_better=False)]
    text = render(two, paper_history(lambda stage: {'PSNR': [24.0 + stage, 25.0]}), prompt='paper')
    assert 'The lower NIQE score stands for better quality.' in text  # several scores: named
    assert 'The higher PSNR score stands for better quality.' in text
    assert 'The task is' not in text and '4. ' not in text  # no task sentence, no non-negativity rule
    assert '4. Every weight must be a non-negative number' in render(
        NIQE, paper_history(), prompt='paper', nonneg_rule=True
    )
    assert 'The NIQE score depicts' in render(NIQE, paper_history(), prompt='paper', name_metrics=True)
    assert 'The score depicts' in render(NIQE, paper_history(), name_metrics=False)
    with pytest.raises(OptionError, match=r"agent.policy.prompt: got 'fig6'; allowed values are \['explicit'"):
        render(NIQE, paper_history(), prompt='fig6')
    with pytest.raises(OptionError, match='agent.policy.nonneg_rule: got 1'):
        render(NIQE, paper_history(), nonneg_rule=1)
