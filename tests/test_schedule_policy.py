"""agent/policies/schedule_policy.py: the initial weights until the switch, then the named ones; one-line errors."""

import pytest

from agent import History, StageRecord, build_policy
from lossagent_errors import OptionError

N, INIT = ['L1', 'SSIM', 'GAN'], [1.0, 0.5, 0.01]


def decide_at(policy, iteration):
    return policy.decide(
        History([StageRecord(0, 0, dict(zip(N, INIT)), {}), StageRecord(1, iteration, dict(zip(N, INIT)), {})])
    ).weights


def test_switches_at_the_first_boundary_at_or_after_switch_at():
    p = build_policy({'type': 'schedule', 'switch_at': 150, 'then': {'GAN': 0.001}}, N, INIT, [])
    assert decide_at(p, 100) == {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}
    assert decide_at(p, 150) == decide_at(p, 200) == {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.001}


@pytest.mark.parametrize(
    'opt, message',
    [
        ({'switch_at': 150}, 'needs switch_at'),
        ({'switch_at': 150, 'then': {'VGG': 1}}, "unknown losses ['VGG']"),
        ({'switch_at': 150, 'then': {'GAN': -1}}, 'agent.policy.then'),
        ({'switch_at': 0, 'then': {'GAN': 1}}, 'switch_at'),
        ({'switch_at': 150, 'then': {'GAN': 1}, 'at': 3}, 'at'),
    ],
)
def test_bad_options_are_one_line(opt, message):
    with pytest.raises(OptionError, match=message.replace('[', r'\[').replace(']', r'\]')):
        build_policy({'type': 'schedule', **opt}, N, INIT, [])
