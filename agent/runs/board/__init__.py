"""The run board: a local web page that shows a run's stages live and takes a person's feedback.

    python -m agent.runs.board experiments/<name> [experiments/<other> ...] --port 8080 [--token]

`runs.py` reads an experiment folder (only the folder: a live run, a finished one or a copy),
`actions.py` writes what a person gives (feedback, ratings, approvals), `app.py` serves both over
HTTP with server-sent events, `launch.py` starts a board beside `train.py` (`agent.board`).
Importing this package imports no web library; `app.py` does (FastAPI, uvicorn).
"""
