"""benchmarks/overhead.py: a tiny real run end to end (a subprocess, as `make bench` runs it)."""

import re
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_writes_a_results_table(tmp_path):
    out = tmp_path / 'results.md'
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'benchmarks' / 'overhead.py'),
            '--quick',
            '--reps',
            '1',
            '--stage-iters',
            '12',
            '--stages',
            '2',
            '--llm-delay',
            '0.05',
            '--variants',
            'fixed',
            'llm sync',
            'lookahead',
            'llm embedded',
            '--out',
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = {line.split('|')[1].strip(): line for line in text.splitlines() if line.startswith('| ')}
    ratio = r'\| \d+\.\d{3} \(\d+\.\d{3}\.\.\d+\.\d{3}\) \|'  # median (min..max) of the paired ratios
    assert '| 1.000 (1.000..1.000) |' in rows['baseline']
    assert re.search(ratio, rows['baseline B'])  # the A/A twin runs whatever --variants says
    assert re.search(ratio, rows['fixed'])
    assert 'not run (--variants)' in rows['llm async'] or 'n/a' in rows['llm async']
    assert re.search(ratio, rows['llm sync'])  # it ran against the stub server
    latency = float(rows['llm sync'].split('|')[8])
    assert 0.05 <= latency < 5  # the stub's delay, plus the client's own time
    assert 'EXTRAPOLATED' in text and 'torch' in text

    assert re.search(r'\| \d+\.\d{4} \[\d+\.\d{4}, \d+\.\d{4}\] \|', rows['fixed'])  # geometric mean [95 % CI]
    # the real model's row: llama.cpp counted its tokens; the prompts of one boundary share their start
    tokens = re.search(r'(\d+) in the prompts = evaluated without KV-cache reuse; (\d+) ', rows['llm embedded'])
    assert tokens and 0 < int(tokens[2]) < int(tokens[1]), rows['llm embedded']
    assert (
        'measured extra training over fixed' in rows['lookahead']
        and 'predicted (K-1)*P/stage_iters 50.0%' in rows['lookahead']
    )


def test_the_ratio_leaves_out_the_iterations_where_the_agent_works():
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    from overhead_report import ratio_ci, summarize

    stage = 10
    base = {'times': [0.2] * 60, 'records': []}
    # a snapshot at offset 5 and a lookahead window's end at offset 3 cost 5x an iteration; training itself not
    slow = [1.0 if it % stage in (0, 3, 5) else 0.2 for it in range(1, 61)]
    variant = {'times': slow, 'records': [], 'busy': frozenset({0, 3, 5})}
    geo, low, high = ratio_ci([variant], [base], stage)
    assert geo == low == high == 1.0
    assert summarize([variant], [base], stage)['ratio_med'] == 1.0
    unlabelled = dict(variant, busy=frozenset({0}))  # without the offsets the agent's work counts as training
    assert ratio_ci([unlabelled], [base], stage)[0] > 1.1


def test_the_lockstep_orders_balance_places_and_predecessors_on_the_compared_iterations():
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    from overhead_report import between_iterations, lockstep_orders, williams_rows

    for names in (['baseline', 'baseline B', 'fixed', 'lookahead', 'llm sync', 'llm async'], list('abcde')):
        k = len(names)
        rows = williams_rows(names)
        assert len(rows) == (k if k % 2 == 0 else 2 * k) and all(sorted(r) == sorted(names) for r in rows)
        pairs = [(r[j], r[j + 1]) for r in rows for j in range(k - 1)]
        assert {pairs.count(p) for p in set(pairs)} == {len(rows) // k}  # every ordered pair, as often
        assert len(set(pairs)) == k * (k - 1)
        stage, n, busy = 20, 20 * 3 * len(rows) + 2, frozenset({0, 5, 10})
        orders = lockstep_orders(names, n, stage, busy)
        compared = between_iterations(n, stage, busy)
        for name in names:  # every place equally often over the compared iterations, to within one round
            counts = [sum(orders[it - 1].index(name) == p for it in compared) for p in range(k)]
            assert max(counts) - min(counts) <= 1, (name, counts)
    # rotating one place on every iteration (the old order) does not: the busy offsets fall on fixed places
    names, n = ['baseline', 'baseline B', 'fixed', 'lookahead', 'llm sync', 'llm async'], 70
    compared = between_iterations(n, 20, frozenset({0, 5, 10}))
    old = {m: [(names.index(m) - it) % 6 for it in compared] for m in names}
    assert any(max(old[m].count(p) for p in range(6)) - min(old[m].count(p) for p in range(6)) > 1 for m in names)
