"""`kit lab ...`."""

import typer

from kit.errors import NotBuiltYet

app = typer.Typer(help="The staged course: list, show and check labs.", no_args_is_help=True)


@app.command("list")
def list_labs():
    """Every lab, in order."""
    raise NotBuiltYet("kit lab list", 8)


@app.command()
def show(n: int):
    """A lab's guide."""
    raise NotBuiltYet("kit lab show", 8)


@app.command()
def check(n: int):
    """Check a lab's artifacts; print what is missing and the fix."""
    raise NotBuiltYet("kit lab check", 8)
