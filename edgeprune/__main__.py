"""`python -m edgeprune`: the CLI, where the console script is not on PATH (a PYTHONPATH checkout, say)."""

from edgeprune.cli import app

app(prog_name="edgeprune")
