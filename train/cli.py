"""`kit train` and `kit recipe`."""

import typer

from kit.errors import NotBuiltYet

recipe_app = typer.Typer(help="Make XTuner recipes for your own character.", no_args_is_help=True)


def train():
    """Preflight, launch XTuner, show progress, plot the loss, sample each checkpoint."""
    raise NotBuiltYet("kit train", 4)


@recipe_app.command("new")
def recipe_new():
    """Write recipes/CHARACTER.py from the bajie recipe."""
    raise NotBuiltYet("kit recipe new", 4)
