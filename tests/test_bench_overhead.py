"""benchmarks/overhead.py: a tiny real run end to end (a subprocess, as `make bench` runs it)."""
import re
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_writes_a_results_table(tmp_path):
    out = tmp_path / 'results.md'
    proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'overhead.py'), '--quick', '--reps', '1',
                           '--stage-iters', '12', '--stages', '2', '--llm-delay', '0.05',
                           '--variants', 'fixed', 'llm sync', 'lookahead', '--out', str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = {line.split('|')[1].strip(): line for line in text.splitlines() if line.startswith('| ')}
    ratio = r'\| \d+\.\d{3} \(\d+\.\d{3}\.\.\d+\.\d{3}\) \|'  # median (min..max) of the paired ratios
    assert '| 1.000 (1.000..1.000) |' in rows['baseline']
    assert re.search(ratio, rows['fixed'])
    assert 'not run (--variants)' in rows['llm async'] or 'n/a' in rows['llm async']
    assert re.search(ratio, rows['llm sync'])  # it ran against the stub server
    latency = float(rows['llm sync'].split('|')[8])
    assert 0.05 <= latency < 5  # the stub's delay, plus the client's own time
    assert 'EXTRAPOLATED' in text and 'torch' in text

    assert re.search(r'\| \d+\.\d{4} \[\d+\.\d{4}, \d+\.\d{4}\] \|', rows['fixed'])  # geometric mean [95 % CI]
    assert 'measured extra training over fixed' in rows['lookahead'] and 'predicted (K-1)*P/stage_iters 50.0%' \
        in rows['lookahead']
