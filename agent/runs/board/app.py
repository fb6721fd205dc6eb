"""The board's HTTP side: a FastAPI app over a few run folders, with server-sent events.

    GET  /                                  the page (static/index.html; everything else is fetched)
    GET  /api/runs                          the runs, and whether this board takes writes
    GET  /api/runs/<run>                    every stage of a run (records without prompts and answers)
    GET  /api/runs/<run>/stages/<k>         one stage with prompts, raw answers, thoughts
    GET  /api/events                        server-sent events: `change` with the runs that changed
    GET  /files/<run>/<path>                an image under that run's folder, nothing else
    POST /api/runs/<run>/stages/<k>/feedback   {text, ratings}          (needs the token)
    POST /api/runs/<run>/stages/<k>/approval   {action, weights}        (needs the token)

Safe by default: the page renders every text from the run as text, never as HTML, and the
Content-Security-Policy allows only this origin's own script (an injected `<script>` would not run
even if it reached the DOM); requests with another Host header are refused (DNS rebinding); writes
need `X-Board-Token` to equal the board's `--token`, and a board without one is read-only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.staticfiles import StaticFiles

from .actions import ActionError, answer_proposal, give_feedback
from .runs import RunFolder

STATIC = Path(__file__).with_name('static')
PING_S = 15.0
SECURITY_HEADERS = {
    'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}


def create_app(
    runs: list[RunFolder], token: str | None = None, allowed_hosts: list[str] | None = None, poll_s: float = 0.5
) -> FastAPI:
    app = FastAPI(title='LossAgent run board', docs_url=None, redoc_url=None, openapi_url=None)
    app.state.open_pages = 0  # live event streams; the server's last look (__main__.py) waits only for them
    by_id = {run.id: run for run in runs}
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ['127.0.0.1', 'localhost', '[::1]'])

    @app.middleware('http')
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def run_of(run_id: str) -> RunFolder:
        if run_id not in by_id:
            raise ActionError(404, f'no run {run_id!r}')
        return by_id[run_id]

    def check_token(request: Request) -> None:
        if not token:
            raise ActionError(403, 'this board is read-only: start it with --token to give feedback')
        if not hmac.compare_digest(request.headers.get('x-board-token', '').encode(), token.encode()):
            raise ActionError(403, 'wrong or missing board token')

    @app.exception_handler(ActionError)
    async def action_error(request: Request, err: ActionError):
        return JSONResponse({'error': str(err)}, status_code=err.status)

    @app.get('/')
    def index():
        return FileResponse(STATIC / 'index.html', media_type='text/html')

    @app.get('/favicon.ico')
    def favicon():
        return Response(status_code=204)

    @app.get('/api/runs')
    def list_runs():
        return {'runs': [{'id': r.id, 'name': r.name} for r in runs], 'writable': bool(token)}

    @app.get('/api/runs/{run_id}')
    def run_summary(run_id: str):
        return run_of(run_id).summary()

    @app.get('/api/runs/{run_id}/stages/{stage}')
    def stage_detail(run_id: str, stage: int):
        detail = run_of(run_id).stage_detail(stage)
        if detail is None:
            raise ActionError(404, f'stage {stage} has no record yet')
        return detail

    @app.get('/files/{run_id}/{relative:path}')
    def run_file(run_id: str, relative: str):
        path = run_of(run_id).file(relative)
        if path is None:
            raise ActionError(404, 'not an image of this run')
        return FileResponse(path)

    @app.post('/api/runs/{run_id}/stages/{stage}/feedback')
    async def feedback(run_id: str, stage: int, request: Request):
        check_token(request)
        body = await _json_body(request)
        return await asyncio.to_thread(give_feedback, run_of(run_id), stage, body.get('text'), body.get('ratings'))

    @app.post('/api/runs/{run_id}/stages/{stage}/approval')
    async def approval(run_id: str, stage: int, request: Request):
        check_token(request)
        body = await _json_body(request)
        return await asyncio.to_thread(answer_proposal, run_of(run_id), stage, body.get('action'), body.get('weights'))

    @app.get('/api/events')
    async def events(request: Request):
        async def stream():
            seen: dict[str, tuple] = {}
            quiet = 0.0
            yield 'retry: 2000\n\n'
            app.state.open_pages += 1
            try:
                while not await request.is_disconnected():
                    now = await asyncio.to_thread(lambda: {r.id: r.signature() for r in runs})
                    changed = [run_id for run_id, sig in now.items() if seen.get(run_id) != sig]
                    seen = now
                    if changed:
                        quiet = 0.0
                        yield f'event: change\ndata: {json.dumps({"runs": changed})}\n\n'
                    elif quiet >= PING_S:
                        quiet = 0.0
                        yield ': ping\n\n'
                    await asyncio.sleep(poll_s)
                    quiet += poll_s
            finally:
                app.state.open_pages -= 1

        return StreamingResponse(
            stream(), media_type='text/event-stream', headers={'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no'}
        )

    app.mount('/static', StaticFiles(directory=STATIC), name='static')
    return app


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ActionError(400, 'expected a JSON body') from None
    if not isinstance(body, dict):
        raise ActionError(400, 'expected a JSON object')
    return body
