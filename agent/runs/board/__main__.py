"""Serve the run board: `python -m agent.runs.board experiments/<name> [experiments/<other> ...] --port 8080`.

Reads only the folders it is given (a live run, a finished one, a copy from a cluster; a folder of
runs such as `experiments/` stands for each run in it). Binds 127.0.0.1 by default. Feedback and
approvals need a token: `--token SECRET` (or the LOSSAGENT_BOARD_TOKEN environment variable), or
`--token` alone for a random one; the URL printed at start carries it (`?token=...`), the page
keeps it for the tab and sends it with every write.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
import threading
import time

from lossagent_errors import UserError

from .launch import TOKEN_ENV, check_bind, is_loopback
from .runs import find_runs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m agent.runs.board', description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', help='experiments/<name> folders (or a folder of them)')
    parser.add_argument('--host', default='127.0.0.1', help='address to bind (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=8080, help='port (0: any free one; default 8080)')
    parser.add_argument(
        '--token',
        nargs='?',
        const='',
        default=None,
        help=f'enable feedback and approvals with this token (alone: a random one; '
        f'default: ${TOKEN_ENV}, else read-only)',
    )
    parser.add_argument('--poll-s', type=float, default=0.5, help='how often the folders are checked for changes')
    parser.add_argument('--exit-with-parent', type=int, metavar='PID', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f'--port: cannot listen on {host}:{port} ({err.strerror})') from None
    sock.listen(128)
    return sock


def last_look_server(config, app, poll_s: float):
    """A uvicorn server that, asked to stop (SIGTERM: the run ended) while pages are open, serves on for
    two scans of the folders and a second: a run writes its last stage about half a second before it
    stops the board, and the open pages should still see it."""
    import uvicorn

    class LastLookServer(uvicorn.Server):
        ending = False

        def handle_exit(self, sig, frame) -> None:
            if sig == signal.SIGTERM and not self.ending and not self.should_exit and app.state.open_pages:
                self.ending = True
                threading.Timer(2 * poll_s + 1.0, super().handle_exit, (sig, frame)).start()
                return
            super().handle_exit(sig, frame)

    return LastLookServer(config)


def _watch_parent(pid: int, server) -> None:
    """Stop serving once the training process that started us is gone (also after a SIGKILL)."""
    while not server.should_exit:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.should_exit = True
            return
        except PermissionError:
            pass
        time.sleep(1.0)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
        if token == '':
            token = secrets.token_urlsafe(18)
        check_bind(args.host, token)
        runs = find_runs(args.runs)
        sock = bind(args.host, args.port)
    except UserError as err:
        print(f'agent.board: error: {err}', file=sys.stderr)
        return 2
    try:
        import uvicorn  # the web stack is imported only to serve

        from .app import create_app
    except ImportError as err:
        print(f'agent.board: error: {err.name} is not installed (pip install fastapi uvicorn)', file=sys.stderr)
        return 2
    loopback_v4 = is_loopback(args.host) and ':' not in args.host
    hosts = ['127.0.0.1', 'localhost', args.host] if loopback_v4 else ['*']
    app = create_app(runs, token=token, allowed_hosts=hosts, poll_s=args.poll_s)
    config = uvicorn.Config(app, log_level='warning', access_log=False, timeout_graceful_shutdown=2, lifespan='off')
    server = last_look_server(config, app, args.poll_s)
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(args.exit_with_parent, server), daemon=True).start()
    port = sock.getsockname()[1]
    shown = f'[{args.host}]' if ':' in args.host else args.host
    query = f'?token={token}' if token else ''
    print(
        f'LossAgent board: http://{shown}:{port}/{query}  ({len(runs)} run{"s" * (len(runs) != 1)}: '
        f'{", ".join(r.name for r in runs)}{"" if token else "; read-only"})',
        flush=True,
    )
    server.run(sockets=[sock])
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
