"""scripts/download_pretrained_models.py against a real HTTP server on 127.0.0.1 (Range requests, a
connection dropped mid-file, wrong checksums, truncated archives)."""

import hashlib
import http.server
import sys
import threading
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import download_pretrained_models as dl  # noqa: E402


class WeightServer(http.server.ThreadingHTTPServer):
    """Serves `files` (name -> bytes) with Range support; a name in `drop_once` is cut off halfway on its
    first request (the socket closed), as a flaky network does."""

    def __init__(self, files):
        self.files, self.drop_once, self.requests = files, set(), []
        super().__init__(('127.0.0.1', 0), Handler)

    @property
    def base_url(self):
        return f'http://127.0.0.1:{self.server_address[1]}'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip('/')
        self.server.requests.append((name, self.headers.get('Range')))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get('Range'):
            start = int(self.headers['Range'].split('=')[1].split('-')[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if name in self.server.drop_once:
            self.server.drop_once.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # mid-file: the client sees fewer bytes than announced
            self.close_connection = True
            return
        self.wfile.write(body)


def checkpoint_bytes(tmp_path, seed=0, size=50_000):
    torch.manual_seed(seed)
    path = tmp_path / f'ckpt{seed}.pth'
    torch.save({'params': {'w': torch.randn(size)}}, path)
    return path.read_bytes()


@pytest.fixture
def server(tmp_path):
    files = {
        'a.pth': checkpoint_bytes(tmp_path, 0),
        'b.pth': checkpoint_bytes(tmp_path, 1),
        'params.mat': b'MATLAB 5.0 MAT-file' + bytes(range(256)) * 40,
    }
    srv = WeightServer(files)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def repo(tmp_path, monkeypatch, server):
    """The script's ROOT and $TORCH_HOME in tmp_path, and a manifest of files the server has."""
    root = tmp_path / 'repo'
    monkeypatch.setattr(dl, 'ROOT', root)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('LOSSAGENT_WEIGHTS_BASE_URL', raising=False)
    sha_b = hashlib.sha256(server.files['b.pth']).hexdigest()
    files = [
        dl.WeightFile('Nets', 'https://example.invalid/releases/a.pth', 'experiments/pretrained_models', 'x'),
        dl.WeightFile(
            'Nets', 'https://example.invalid/releases/b.pth', 'experiments/pretrained_models', 'y', sha256=sha_b
        ),
        dl.WeightFile('IQA', 'https://example.invalid/params.mat', '{hub}/pyiqa', 'z', sha256_prefix=sha_b[:8]),
    ]
    monkeypatch.setattr(dl, 'FILES', files)
    return root


def run(capsys, *args):
    code = dl.main(list(args))
    return code, capsys.readouterr().out


def test_fetches_verifies_and_skips_what_is_present(repo, server, capsys, tmp_path):
    server.files['params.mat'] = server.files['b.pth']  # so that its sha256 prefix matches
    code, out = run(capsys, '--base_url', server.base_url)
    assert code == 0, out
    a = repo / 'experiments/pretrained_models/a.pth'
    assert a.read_bytes() == server.files['a.pth']
    assert (tmp_path / 'torch/hub/pyiqa/params.mat').read_bytes() == server.files['b.pth']
    assert [line.split()[0] for line in out.splitlines()] == ['fetched'] * 3
    assert 'no published checksum: size + zip integrity' in out and 'sha256 prefix' in out
    server.requests.clear()
    code, out = run(capsys, '--base_url', server.base_url, 'Nets')
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ['ok', 'ok'] and not server.requests


def test_connection_dropped_mid_file_resumes_with_range(repo, server, capsys):
    server.drop_once = {'a.pth', 'b.pth'}
    code, out = run(capsys, '--base_url', server.base_url, 'Nets')
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()] == ['resumed', 'resumed']
    for name in ('a.pth', 'b.pth'):
        assert (repo / 'experiments/pretrained_models' / name).read_bytes() == server.files[name]
        ranges = [r for n, r in server.requests if n == name]
        assert ranges[0] is None and ranges[1] == f'bytes={len(server.files[name]) // 2}-'
    assert not list((repo / 'experiments/pretrained_models').glob('*.part'))


def test_a_part_file_left_by_an_earlier_run_is_continued(repo, server, capsys):
    folder = repo / 'experiments/pretrained_models'
    folder.mkdir(parents=True)
    (folder / 'a.pth.part').write_bytes(server.files['a.pth'][:1000])
    code, out = run(capsys, '--base_url', server.base_url, 'Nets')
    assert code == 0 and out.splitlines()[0].startswith('resumed')
    assert ('a.pth', 'bytes=1000-') in server.requests
    assert (folder / 'a.pth').read_bytes() == server.files['a.pth']


def test_wrong_checksum_truncated_archive_and_missing_file_fail_one_line_each(repo, server, capsys, tmp_path):
    server.files['b.pth'] = checkpoint_bytes(tmp_path, 2)  # not the file whose sha256 the manifest holds
    server.files['a.pth'] = server.files['a.pth'][:-300]  # a zip without its central directory
    code, out = run(capsys, '--base_url', server.base_url, '--retries', '1')
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith('FAILED') and 'not a zip archive' in lines[0]
    assert lines[1].startswith('FAILED') and 'is not the published' in lines[1]
    assert lines[2].startswith('FAILED') and 'is not the published' in lines[2]  # params.mat: prefix of b
    assert not list((repo / 'experiments/pretrained_models').glob('*'))  # nothing half-written is kept
    del server.files['a.pth']
    code, out = run(capsys, '--base_url', server.base_url, 'Nets')
    assert code == 1 and 'HTTP 404' in out.splitlines()[0]


def test_a_dead_server_keeps_the_partial_file_for_the_next_run(repo, server, capsys):
    server.drop_once = {'a.pth'}
    folder = repo / 'experiments/pretrained_models'
    code, out = run(capsys, '--base_url', server.base_url, '--retries', '0', 'Nets')
    first = out.splitlines()[0]
    assert code == 1 and first.startswith('FAILED') and 'run again to resume' in first
    assert (folder / 'a.pth.part').stat().st_size == len(server.files['a.pth']) // 2
    code, out = run(capsys, '--base_url', server.base_url, 'Nets')
    assert code == 0 and out.splitlines()[0].startswith('resumed')


def test_environment_variable_sets_the_base_url(repo, server, capsys, monkeypatch):
    monkeypatch.setenv('LOSSAGENT_WEIGHTS_BASE_URL', server.base_url)
    code, out = run(capsys, 'Nets')
    assert code == 0 and out.count('fetched') == 2


def test_list_names_every_file_of_the_real_manifest_and_fetches_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    code, out = run(capsys, '--list')
    assert code == 0 and not (tmp_path / 'torch').exists()
    for entry in dl.FILES:
        assert entry.url in out and entry.name in out
    # every checkpoint the paper's option files start from is in the manifest (or converted from it)
    import yaml

    names = {e.name for e in dl.FILES} | {dl.PROMPTIR_CONVERTED}
    for path in (ROOT / 'options' / 'train').glob('[CRA]*.yml'):
        start = yaml.safe_load(path.read_text())['path']['pretrain_network_g']
        assert Path(start).name in names, path.name
        assert start.startswith(dl.PRETRAINED)
    assert 'vgg19-dcbb9e9d.pth' in names and 'vgg16-397923af.pth' in names


def test_unknown_group_is_one_line(capsys):
    assert dl.main(['Swin']) == 2
    assert "unknown group 'Swin'" in capsys.readouterr().err


def test_promptir_release_is_converted_for_the_air_files(repo, server, capsys, monkeypatch, tmp_path):
    from lossagent_arch.promptir_arch import PromptIR  # noqa: F401  (registers)

    lightning = tmp_path / 'model.ckpt'
    torch.save({'state_dict': {'net.conv.weight': torch.ones(2, 2)}, 'epoch': 3}, lightning)
    server.files['promptir_model.ckpt'] = lightning.read_bytes()
    monkeypatch.setattr(
        dl,
        'FILES',
        [
            dl.WeightFile(
                'PromptIR',
                'https://example.invalid/v1.0/model.ckpt',
                'experiments/pretrained_models',
                'AIR',
                filename='promptir_model.ckpt',
            )
        ],
    )
    code, out = run(capsys, '--base_url', server.base_url)
    assert code == 0 and 'converted to experiments/pretrained_models/PromptIR_allinone.pth' in out
    converted = torch.load(repo / 'experiments/pretrained_models/PromptIR_allinone.pth', weights_only=True)
    assert list(converted['params']) == ['conv.weight']
