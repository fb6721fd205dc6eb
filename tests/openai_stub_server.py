"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol.

Tests talk to the LLM through this server instead of patching the client, so the
request bodies, retries, timeouts and concurrency are exercised exactly as against
`vllm serve`. A *responder* decides each answer:

    def responder(body: dict, index: int) -> str | tuple[int, str] | bytes
        str            -> a 200 chat completion whose message content is the string
        (status, text) -> that HTTP status with `text` as the body
        bytes          -> written as a 200 body verbatim (garbage bodies)

Run as a script it serves a deterministic answer forever, which end-to-end and
resume tests use from a separate process:

    python tests/openai_stub_server.py --port 0 --port-file /tmp/port
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from collections.abc import Callable

Answer = str | bytes | tuple
Responder = Callable[[dict, int], Answer]


def completion_body(content: str, model: str) -> dict:
    return {
        'id': 'chatcmpl-stub',
        'object': 'chat.completion',
        'created': int(time.time()),
        'model': model,
        'choices': [
            {
                'index': 0,
                'message': {'role': 'assistant', 'content': content},
                'finish_reason': 'stop',
            }
        ],
        'usage': {'prompt_tokens': 0, 'completion_tokens': 0, 'total_tokens': 0},
    }


def loss_names_from_prompt(body: dict) -> list[str]:
    """The loss names the prompt asks for, read from its 'Weights: A:B:C=' format line."""
    text = '\n'.join(str(m.get('content', '')) for m in body.get('messages', []))
    match = re.search(r'Weights:\s*([A-Za-z0-9_]+(?::[A-Za-z0-9_]+)+)\s*=', text)
    return match.group(1).split(':') if match else ['L1', 'Perceptual', 'GAN']


def deterministic_responder(body: dict, index: int) -> str:
    """Answers like Llama-3 does, with weights that depend only on the prompt's text.

    The same prompt always gets the same answer, whatever the order of requests, so a
    resumed run and an uninterrupted one get identical decisions.
    """
    names = loss_names_from_prompt(body)
    text = '\n'.join(str(m.get('content', '')) for m in body.get('messages', []))
    digest = hashlib.sha256(text.encode()).digest()
    values = [round(0.2 + digest[i] / 255 * 1.3, 3) for i in range(len(names))]
    ratio = ':'.join(f'{v:g}' for v in values)
    return (
        f"Here's a proposed set of weights.\nWeights: {':'.join(names)}={ratio}\n"
        'Thoughts: shifting emphasis between the losses to explore.'
    )


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIStubServer

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.rstrip('/').endswith('/models'):
            self._send(200, json.dumps({'object': 'list', 'data': [{'id': self.server.model, 'object': 'model'}]}))
        else:
            self._send(404, '{"error": "not found"}')

    def do_POST(self):
        length = int(self.headers.get('Content-Length', 0))
        raw = self.rfile.read(length)
        if not self.path.rstrip('/').endswith('/chat/completions'):
            self._send(404, '{"error": "not found"}')
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, '{"error": "invalid json"}')
            return
        index = self.server.record(body, dict(self.headers))
        if self.server.delay:
            time.sleep(self.server.delay)
        answer = self.server.responder(body, index)
        if isinstance(answer, bytes):
            self._send(200, answer)
        elif isinstance(answer, tuple):
            status, text = answer
            self._send(int(status), text)
        else:
            self._send(200, json.dumps(completion_body(str(answer), body.get('model', self.server.model))))

    def _send(self, status: int, body):
        data = body if isinstance(body, bytes) else body.encode()
        try:
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)


class OpenAIStubServer(ThreadingHTTPServer):
    """`with OpenAIStubServer(responder) as srv: client(base_url=srv.base_url)`."""

    daemon_threads = True
    # socketserver's default listen backlog of 5 drops SYNs when 10+ clients connect at once;
    # the kernel retries after 1 s, which looked like a server that does not batch
    request_queue_size = 128

    def __init__(
        self,
        responder: Responder = deterministic_responder,
        delay: float = 0.0,
        port: int = 0,
        model: str = 'stub-llama-3',
    ):
        super().__init__(('127.0.0.1', port), _Handler)
        self.responder = responder
        self.delay = delay
        self.model = model
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.max_in_flight = 0
        self._in_flight = 0

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}/v1'

    def record(self, body: dict, headers: dict) -> int:
        with self._lock:
            self.requests.append(body)
            self.headers_seen.append(headers)
            return len(self.requests) - 1

    def process_request_thread(self, request, client_address):
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._in_flight -= 1

    def start(self) -> OpenAIStubServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--port-file', type=Path, help='write the bound port here once listening')
    parser.add_argument('--delay', type=float, default=0.0, help='seconds before each answer')
    args = parser.parse_args()
    server = OpenAIStubServer(delay=args.delay, port=args.port)
    if args.port_file:
        tmp = args.port_file.with_suffix('.tmp')
        tmp.write_text(str(server.server_address[1]))
        tmp.replace(args.port_file)
    print(f'serving {server.base_url}', flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
