"""`agent.board`: start the run board beside a training run, and the bind/token rule of every board.

    agent:
      board: {port: 8080, host: 127.0.0.1, token_env: LOSSAGENT_BOARD_TOKEN}   # or `board: true`

Rank 0 of `train.py` starts `python -m agent.runs.board experiments/<name>` as its own process (the
web server never competes with training for the interpreter) and stops it at the end of
training; the board also exits by itself when the training process is gone (even after a
SIGKILL). The token that enables feedback and approvals comes from the environment variable
named by `token_env`, never from the YAML (which BasicSR copies into the experiment folder);
without it the board is read-only.
"""

from __future__ import annotations

import atexit
import importlib.util
import ipaddress
import os
import subprocess
import sys

from lossagent_errors import OptionError, UserError

from ...options import number, read_options

BOARD_DEFAULTS = {'port': 8080, 'host': '127.0.0.1', 'token_env': 'LOSSAGENT_BOARD_TOKEN'}
WEB_MODULES = ('fastapi', 'uvicorn')
TOKEN_ENV = 'LOSSAGENT_BOARD_TOKEN'  # where `python -m agent.runs.board` reads a token it was not given


def is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, where: str = '--host') -> None:
    """A board reachable from other machines must not let anyone write: it needs a token."""
    if not is_loopback(host) and not token:
        raise UserError(
            f'{where}: {host} is reachable from other machines; give a --token (or keep the default 127.0.0.1)'
        )


def check_board_options(value) -> dict | None:
    """`agent.board` validated: None when no board is started."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise OptionError(f'agent.board: got {value!r}; expected true, false or a mapping such as {{port: 8080}}')
    o = read_options(value, BOARD_DEFAULTS, prefix='agent.board')
    o['port'] = number(o, 'port', 0, 65535, integer=True, prefix='agent.board')
    for key in ('host', 'token_env'):
        if not isinstance(o[key], str) or not o[key].strip():
            raise OptionError(f'agent.board.{key}: got {o[key]!r}; expected a non-empty string')
    check_bind(o['host'], os.environ.get(o['token_env']), where='agent.board.host')
    missing = [m for m in WEB_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise OptionError(f'agent.board: the board needs {" and ".join(missing)} (pip install fastapi uvicorn)')
    return o


class BoardProcess:
    """A board serving one experiment folder, in a child process."""

    def __init__(self, experiment_root: str, options: dict, logger=None):
        token = os.environ.get(options['token_env'])
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        if token:
            env[TOKEN_ENV] = token
        cmd = [
            sys.executable,
            '-m',
            'agent.runs.board',
            str(experiment_root),
            '--host',
            options['host'],
            '--port',
            str(options['port']),
            '--exit-with-parent',
            str(os.getpid()),
        ]
        self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        if logger is not None:
            access = (
                'feedback and approvals with the token'
                if token
                else f'read-only: set {options["token_env"]} to give feedback'
            )
            logger.info(f'Run board: http://{options["host"]}:{options["port"]}/ ({access}; pid {self.process.pid})')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:  # open pages get a last look at the run (about 2 s), then a graceful shutdown (2 s)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_board(opt: dict, logger=None) -> BoardProcess | None:
    """The board of this run (BasicSR's parsed options) when `agent.board` asks for one; rank 0 only."""
    options = check_board_options((opt.get('agent') or {}).get('board'))
    if options is None or opt.get('rank', 0) != 0:
        return None
    return BoardProcess(opt['path']['experiments_root'], options, logger)
