"""What keeps a weak model from moving training far: robust aggregation, the trust region `max_change`,
and the compliance counts of answers that only repeat the format example or the current weights.

Units with exact numbers, then the policy against the local OpenAI-compatible server answering like
the small model did (issue 21: most answers copy the example, one is wild).
"""

import pytest

from agent import ExpertInfo, History, StageRecord, build_policy
from agent.policies.llm_policy import aggregate, compliance, trust_region
from lossagent_errors import OptionError
from openai_stub_server import OpenAIStubServer

N = ['L1', 'SSIM', 'GAN']
INIT = [1.0, 0.5, 0.01]


def test_aggregates_with_exact_numbers():
    values = [1.0, 1.0, 1.0, 1.2, 275.0]  # one wild answer
    assert aggregate(values, 'mean') == pytest.approx(55.84)
    assert aggregate(values, 'median') == 1.0
    assert aggregate(values, 'trimmed', 0.2) == pytest.approx((1.0 + 1.0 + 1.2) / 3)  # drops 1.0 and 275
    assert aggregate(values, 'trimmed', 0.0) == pytest.approx(55.84)
    assert aggregate([3.0], 'trimmed', 0.4) == 3.0  # nothing left to drop: the answer itself
    assert aggregate([1.0, 9.0], 'trimmed', 0.49) == 5.0


def test_trust_region_limits_each_weight_by_the_factor():
    current = {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}
    applied, limited = trust_region({'L1': 1.1, 'SSIM': 0.01, 'GAN': 0.19}, current, 2.0)
    assert applied == {'L1': 1.1, 'SSIM': 0.25, 'GAN': 0.02} and limited == ['SSIM', 'GAN']
    assert trust_region({'L1': 1.1, 'SSIM': 0.01, 'GAN': 0.19}, current, None) == (
        {'L1': 1.1, 'SSIM': 0.01, 'GAN': 0.19},
        [],
    )
    applied, limited = trust_region({'L1': 2.0, 'SSIM': 0.0, 'GAN': 0.5}, {'L1': 1.0, 'SSIM': 0.0, 'GAN': 0.5}, 1.5)
    assert applied == {'L1': 1.5, 'SSIM': 0.0, 'GAN': 0.5} and limited == ['L1']  # zero stays zero


def test_compliance_counts_repeats_of_the_example_and_of_the_current_weights():
    example, current = dict(zip(N, INIT)), {'L1': 1.0, 'SSIM': 0.6, 'GAN': 0.01}

    def image(i, weights, thoughts='x'):
        return {
            'image': i,
            'valid': weights is not None,
            'reprompted': False,
            'forms': ['ratio' if weights else None],
            'errors': [None],
            'answered': True,
            'weights': weights,
            'thoughts': thoughts,
        }

    images = [
        image(0, {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}, '(The reason you give this weights)'),
        image(1, {'L1': 1.000001, 'SSIM': 0.5, 'GAN': 0.01}),  # the same as the prompt writes it
        image(2, {'L1': 1.0, 'SSIM': 0.6, 'GAN': 0.01}),
        image(3, {'L1': 7.36, 'SSIM': 1.01, 'GAN': 2.75}),
        image(4, None),
    ]
    c = compliance(images, current, example, N)
    assert (c['prompts'], c['valid'], c['repeats_example'], c['repeats_current'], c['template_thoughts']) == (
        5,
        4,
        2,
        1,
        1,
    )
    assert 'weights' not in c['images'][0] and 'thoughts' not in c['images'][0]


def history(n_images):
    h = History([StageRecord(0, 0, dict(zip(N, INIT)), {'NIQE': [5.0 + i / 10 for i in range(n_images)]})])
    h.append(StageRecord(1, 50, dict(zip(N, INIT)), {'NIQE': [4.0 + i / 10 for i in range(n_images)]}))
    return h


def weak_model(body, index):
    """Like SmolLM2 at the demo's first boundary: copies the example, now and then a wild answer."""
    wild = index % 5 == 4
    ratio = '7.3628:1.01:2.75' if wild else '1.0:0.5:0.01'
    return f'Weights: L1:SSIM:GAN={ratio}\nThoughts: (The reason you give this weights)'


@pytest.mark.parametrize('how,gan', [('mean', 0.558), ('median', 0.01), ('trimmed', 0.01), (None, 0.01)])
def test_a_weak_models_answers_aggregated(how, gan):
    # None: the defaults (median, max_change 2) hold two wild answers of ten
    chosen = {'aggregate': how, 'max_change': None} if how else {}
    with OpenAIStubServer(weak_model) as srv:
        p = build_policy(
            {'type': 'llm', 'base_url': srv.base_url, 'max_concurrency': 1, 'timeout_s': 5, **chosen},
            N,
            INIT,
            [ExpertInfo('NIQE', lower_better=True)],
        )
        d = p.decide(history(10))
        p.close()
    assert d.fallback is None and d.weights['GAN'] == pytest.approx(gan)  # 2 of 10 answers are wild
    c = d.info['compliance']
    assert (c['valid'], c['repeats_example'], c['repeats_current'], c['template_thoughts']) == (10, 8, 8, 10)


def test_max_change_keeps_the_proposal_and_applies_the_limited_weights():
    with OpenAIStubServer(weak_model) as srv:
        p = build_policy(
            {
                'type': 'llm',
                'base_url': srv.base_url,
                'aggregate': 'mean',
                'max_change': 2,
                'max_concurrency': 1,
                'timeout_s': 5,
            },
            N,
            INIT,
            [ExpertInfo('NIQE', lower_better=True)],
        )
        d = p.decide(history(5))  # the 5th answer is wild: mean GAN = (4 * 0.01 + 2.75) / 5
        p.close()
    assert d.info['proposed']['GAN'] == pytest.approx(0.558) and d.weights['GAN'] == pytest.approx(0.02)
    assert d.info['limited'] == ['L1', 'GAN'] and d.info['max_change'] == 2  # SSIM's 0.602 is inside x2
    assert d.weights['L1'] == pytest.approx(2.0) and d.weights['SSIM'] == pytest.approx(0.602)
    assert d.to_dict()['info']['proposed'] == d.info['proposed']  # the record keeps both


@pytest.mark.parametrize(
    'key,value,message',
    [
        ('max_change', 0.5, r'agent\.policy\.max_change'),
        ('aggregate', 'mode', r'agent\.policy\.aggregate'),
        ('trim', 0.5, r'agent\.policy\.trim'),
        ('max_thoughts', 0, r'agent\.policy\.max_thoughts'),
        ('n_threads', 0, r'agent\.policy\.n_threads'),
    ],
)
def test_bad_safety_options_are_one_line(key, value, message):
    with pytest.raises(OptionError, match=message):
        build_policy(
            {'type': 'llm', 'base_url': 'http://127.0.0.1:9/v1', key: value},
            N,
            INIT,
            [ExpertInfo('NIQE', lower_better=True)],
        )
