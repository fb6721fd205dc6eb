"""options/test/README.md maps every table of the paper to files that exist; Table 12's times are printed."""

import re
from pathlib import Path

from agent.record import StageRecord
from agent.runs.summary import time_line

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'options' / 'test' / 'README.md').read_text(encoding='utf-8')


def table_rows() -> dict[int, str]:
    """'| Table 8 | ... |' rows of the map, by table number."""
    return {int(m.group(1)): m.group(0) for m in re.finditer(r'^\| Table (\d+) \|.*$', README, re.M)}


def test_every_paper_table_is_mapped_to_files_that_exist():
    rows = table_rows()
    assert sorted(rows) == list(range(1, 15))
    train = {p.stem for p in (ROOT / 'options' / 'train').glob('*.yml')}
    test = {p.name for p in (ROOT / 'options' / 'test').glob('*.yml')}
    for number, row in rows.items():
        cells = [c.strip() for c in row.strip('|').split('|')]
        runs, table = re.findall(r'`([^`]+)`', cells[2]), cells[3]
        for run in runs:
            assert run in train or run.startswith('tests/'), f'Table {number}: no options/train/{run}.yml'
        named = re.findall(r'`([^`]+\.yml)`', table)
        assert all(name in test for name in named), f'Table {number}: {named}'
        assert named or table.startswith('none: '), f'Table {number}: name a test file or say why there is none'


def test_every_test_file_is_in_the_map():
    for path in (ROOT / 'options' / 'test').glob('*.yml'):
        assert f'`{path.name}`' in README, f'options/test/README.md does not say which table {path.name} is'


def test_summary_prints_the_agent_time_of_a_run():
    weights = {'L1': 1.0}
    records = [
        StageRecord(0, 0, weights, {'NIQE': [3.0]}, eval_s=6.0),
        StageRecord(1, 10, weights, {'NIQE': [2.9]}, eval_s=12.0, policy='llm', latency_s=120.0),
        StageRecord(2, 20, weights, {'NIQE': [2.8]}, eval_s=12.0, policy='llm', latency_s=60.0),
    ]
    assert time_line(records) == (
        'agent time: feedback (restoring + experts) 0.50 min over 3 boundaries; '
        'policy (LLM reasoning) 3.00 min over 2 decisions'
    )
