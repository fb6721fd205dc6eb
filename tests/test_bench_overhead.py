"""benchmarks/overhead.py: a tiny real run end to end (a subprocess, as `make bench` runs it)."""
import re
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_writes_a_results_table(tmp_path):
    out = tmp_path / 'results.md'
    proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'overhead.py'), '--quick', '--reps', '1',
                           '--stage-iters', '2', '--stages', '1', '--llm-delay', '0.05',
                           '--variants', 'fixed', 'llm sync', '--out', str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = {line.split('|')[1].strip(): line for line in text.splitlines() if line.startswith('| ')}
    assert re.search(r'\| 1\.000; 1\.000 \|', rows['baseline'])
    assert re.search(r'\| \d+\.\d{3}; \d+\.\d{3} \|', rows['fixed'])  # a measured ratio
    assert 'not run (--variants)' in rows['llm async'] or 'n/a' in rows['llm async']
    # the llm row ran against the stub, or says why it could not
    assert re.search(r'\| \d+\.\d{3}; \d+\.\d{3} \|', rows['llm sync']) or 'n/a (' in rows['llm sync']
    assert 'EXTRAPOLATED' in text and 'torch' in text

