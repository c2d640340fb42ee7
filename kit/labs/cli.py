"""`kit lab list | show N | check N | init`: the staged course in labs/."""

from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from kit.artifacts import COURSE_CHARACTER
from kit.errors import KitError

app = typer.Typer(help="The staged course: list, show and check labs.", no_args_is_help=True)

WORKDIR = typer.Option(Path("lab"), "--workdir", "-w", help="The lab's working folder (base/, data/, "
                       "work/, adapter/, merged/, eval/); `kit demo` writes the same layout.")
CHARACTER = typer.Option(COURSE_CHARACTER, "--character", "-c", help="Character folder under datasets/.")


@app.command("list")
def list_labs():
    """Every lab, in order, with the GPU slice it needs and how long it takes."""
    from kit.labs.catalog import load_labs

    table = Table(title="kit labs — `kit lab show N` to read one, `kit lab check N` to check it")
    for col in ("lab", "title", "GPU slice", "minutes"):
        table.add_column(col, overflow="fold")
    for lab in load_labs():
        table.add_row(str(lab.n), lab.title, lab.slice, lab.minutes)
    Console().print(table)


@app.command()
def show(n: int):
    """A lab's guide (中文 first, English after)."""
    from kit.labs.catalog import get_lab

    lab = get_lab(n)
    if not lab.path.is_file():
        raise KitError(f"lab {n}'s guide {lab.path} is missing", "restore labs/ from the kit checkout")
    Console().print(Markdown(lab.path.read_text(encoding="utf-8")))


@app.command()
def init(workdir: Path = WORKDIR, character: str = CHARACTER):
    """Put the embedded tiny InternLM2 in WORKDIR/base: the CPU stand-in for InternLM2-Chat-1.8B."""
    from kit.tiny import build_tiny_model
    from kit.workspace import Workspace

    base = build_tiny_model(Workspace(workdir).base, character=character)
    Console().print(f"tiny InternLM2 for {character} → {base}\nnext: kit lab check 1 --workdir {workdir}")


@app.command()
def check(n: int, workdir: Path = WORKDIR, character: str = CHARACTER):
    """Check a lab's artifacts for real; print what is missing and the fix; exit 1 if anything is."""
    from kit.labs.catalog import get_lab
    from kit.labs.checks import run_lab_check
    from kit.labs.findings import render

    lab = get_lab(n)
    if not render(Console(), f"lab {n}: {lab.title}  ({workdir})", run_lab_check(n, workdir, character)):
        raise typer.Exit(1)
