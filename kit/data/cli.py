"""`kit data ...` commands."""

import typer

from kit.errors import NotBuiltYet

app = typer.Typer(help="Build a character dataset: extract, generate, check, build.", no_args_is_help=True)


@app.command()
def extract():
    """A character's lines (with the line before as the user turn) from a script or novel."""
    raise NotBuiltYet("kit data extract", 3)


@app.command()
def generate():
    """Multi-turn persona dialogues through any OpenAI-compatible API."""
    raise NotBuiltYet("kit data generate", 3)


@app.command()
def build():
    """datasets/CHARACTER/ sources -> train/eval JSONL + dataset card."""
    raise NotBuiltYet("kit data build", 3)


@app.command()
def check():
    """Validate a training file: every problem as FILE:LINE: reason."""
    raise NotBuiltYet("kit data check", 3)
