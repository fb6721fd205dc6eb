"""agent.runs.plot on synthetic decision logs: files written, compare mode, and bad data never raising."""

import json
import logging
import random

import pytest

from agent import StageRecord
from agent.runs import plot

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def synthetic_records(policy='llm', stages=5, stage_iters=80, seed=0, fallback_stage=3):
    rng = random.Random(seed)
    weights = {'L1': 1.0, 'SSIM': 0.5, 'GAN': 0.01}
    records = []
    for stage in range(stages + 1):
        before = dict(weights)
        if stage:
            weights = {k: round(v * rng.uniform(0.5, 2.0), 4) for k, v in weights.items()}
        fallback = 'policy returned invalid weights' if stage == fallback_stage else None
        if fallback:
            weights = before
        niqe = [round(rng.uniform(4, 8), 3) for _ in range(10)]
        psnr = [round(rng.uniform(25, 30), 3) for _ in range(10)]
        records.append(
            {
                'stage': stage,
                'iteration': stage * stage_iters,
                'weights_before': before,
                'weights_after': dict(weights),
                'scores': {'NIQE': niqe, 'PSNR': psnr, 'critique': ['too smooth'] * 10},
                'mean_scores': {'NIQE': sum(niqe) / 10, 'PSNR': sum(psnr) / 10},
                'directions': {'NIQE': 'lower', 'PSNR': 'higher'},
                'policy': policy if stage else 'initial',
                'fallback': fallback,
                'latency_s': 0.5,
                'boundary_s': 0.7,
                'superseded': False,
            }
        )
    return records


def typed(records):
    return [StageRecord.from_dict(r) for r in records]


def write_log(root, records, name='run'):
    agent_dir = root / name / 'agent'
    agent_dir.mkdir(parents=True)
    (agent_dir / 'decisions.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    return root / name


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_experiment_writes_weights_and_scores(tmp_path):
    exp = write_log(tmp_path, synthetic_records())
    written = plot.plot_experiment(exp)
    assert [p.name for p in written] == ['weights.png', 'scores.png']
    for path in written:
        assert path.parent == exp / 'agent'
        assert_png(path)
    assert not list((exp / 'agent').glob('.*tmp*'))  # atomic write leaves nothing behind


def test_weight_curve_is_a_step_that_changes_at_each_boundary():
    records = synthetic_records(stages=2)
    xs, ys = plot.weight_series(typed(records), 'GAN')
    assert xs == [0, 0, 80, 160]
    assert ys == [0.01, 0.01, records[1]['weights_after']['GAN'], records[2]['weights_after']['GAN']]
    records[2]['applied_iteration'] = 163  # an asynchronous decision applies when its answer arrived
    assert plot.weight_series(typed(records), 'GAN')[0] == [0, 0, 80, 163]
    # 1.0 vs 0.01: a linear axis would flatten GAN; zeros need symlog
    assert plot.choose_y_scale([1.0, 0.5, 0.01]) == 'log'
    assert plot.choose_y_scale([1.0, 0.0, 0.01]) == 'symlog'
    assert plot.choose_y_scale([1.0, 0.5]) == 'linear'
    assert plot.choose_y_scale([1.0, 0.01], log_y='off') == 'linear'


def test_text_scores_are_skipped_and_directions_shown():
    records = typed(synthetic_records())
    assert plot.expert_names(records) == ['NIQE', 'PSNR']
    assert plot.expert_title(records, 'NIQE') == 'NIQE ↓ (lower is better)'
    assert plot.expert_title(records, 'PSNR') == 'PSNR ↑ (higher is better)'


def test_superseded_records_are_ignored(tmp_path):
    records = synthetic_records(stages=4)
    stale = dict(records[3], superseded=True, weights_after={'L1': 99.0, 'SSIM': 99.0, 'GAN': 99.0})
    exp = write_log(tmp_path, records[:4] + [stale] + records[4:])
    loaded = plot.load_records(exp)
    assert [r.iteration for r in loaded] == [0, 80, 160, 240, 320]
    assert all(r.weights_after['L1'] != 99.0 for r in loaded)


def test_compare_mode_writes_side_by_side_figures(tmp_path):
    runs = [
        write_log(tmp_path, synthetic_records(policy=p, seed=i), name=p)
        for i, p in enumerate(['fixed', 'random', 'llm'])
    ]
    out = tmp_path / 'figs'
    assert plot.main([str(r) for r in runs] + ['--out', str(out)]) == 0
    for name in ('compare_weights.png', 'compare_scores.png'):
        assert_png(out / name)
    for run in ('fixed', 'random', 'llm'):  # per-run plots do not overwrite each other in --out
        assert_png(out / run / 'weights.png')


def test_compare_default_goes_to_first_runs_agent_folder(tmp_path):
    a = write_log(tmp_path, synthetic_records(policy='fixed'), name='a')
    b = write_log(tmp_path, synthetic_records(policy='llm', seed=1), name='b')
    written = plot.plot_compare([a, b], a / 'agent')
    assert [p.name for p in written] == ['compare_weights.png', 'compare_scores.png']
    assert all(p.parent == a / 'agent' for p in written)


@pytest.mark.parametrize(
    'content',
    [
        None,  # no log at all
        '',  # empty log
        'not json\n{"stage": 0',  # garbage and a torn last line
        json.dumps({'stage': 0}) + '\n',  # a record without iteration/weights
    ],
)
def test_missing_or_empty_log_returns_nothing(tmp_path, content, caplog):
    exp = tmp_path / 'run'
    if content is not None:
        (exp / 'agent').mkdir(parents=True)
        (exp / 'agent' / 'decisions.jsonl').write_text(content)
    assert plot.plot_experiment(exp) == []
    assert plot.main([str(exp)]) == 1


def test_none_and_text_scores_and_odd_weights_still_plot(tmp_path):
    records = synthetic_records(stages=3)
    records[0]['scores'] = None
    records[0]['mean_scores'] = None
    records[1]['scores']['NIQE'] = [None, 'n/a', float('nan'), 5.0]
    records[1]['mean_scores'] = {'NIQE': None, 'PSNR': 'text'}
    records[2]['weights_after'] = {'L1': 0.0, 'SSIM': None, 'GAN': 'x'}  # a zero and junk
    records[3].pop('directions')
    exp = write_log(tmp_path, records)
    written = plot.plot_experiment(exp)
    assert [p.name for p in written] == ['weights.png', 'scores.png']
    for path in written:
        assert_png(path)


def test_only_text_experts_gives_weights_only(tmp_path):
    records = synthetic_records(stages=2)
    for r in records:
        r['scores'] = {'critique': ['blurry'] * 3}
        r['mean_scores'] = {}
        r['directions'] = {}
    written = plot.plot_experiment(write_log(tmp_path, records))
    assert [p.name for p in written] == ['weights.png']


def test_plot_experiment_never_raises(tmp_path, monkeypatch, caplog):
    exp = write_log(tmp_path, synthetic_records())

    def broken(*args, **kwargs):
        raise RuntimeError('disk full')

    monkeypatch.setattr(plot, 'save', broken)
    with caplog.at_level(logging.WARNING, logger='basicsr'):
        assert plot.plot_experiment(exp) == []
    assert 'disk full' in caplog.text
