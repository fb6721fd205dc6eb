"""Reading experiment folders: what a run decided and why, as a table, plots, a re-run, or a web page.

    python -m agent.runs.summary experiments/<name>     the trajectory as a table
    python -m agent.runs.plot experiments/<name> ...    weight and score curves (PNG)
    python -m agent.runs.replay <decisions.jsonl> ...   re-ask logged boundaries, without training
    python -m agent.runs.board experiments/<name> ...   the run board: live stages, human feedback

They read only the folder (decisions.jsonl and the stage files), so they work on a live run, a
finished one or a copy from another machine.
"""
