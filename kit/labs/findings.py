"""What a lab check reports: one Finding per artifact — ok, missing (with the fix) or info."""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kit.errors import KitError

OK, MISSING, INFO = "ok", "missing", "info"


@dataclass
class Finding:
    what: str
    status: str
    detail: str = ""
    fix: str = ""


class Missing(KitError):
    """Raised inside a check step: the artifact is absent or wrong; `fix` says how to make it."""


def need(path: Path, fix: str) -> Path:
    if not path.exists():
        raise Missing(f"{path} does not exist", fix)
    return path


def attempt(what: str, step: Callable[[], str | None], fix: str) -> Finding:
    """Run one check step; its return value is the detail shown when it passes."""
    try:
        detail = step()
    except KitError as e:
        return Finding(what, MISSING, e.message, e.fix or fix)
    except Exception as e:  # a stage's own failure on a broken artifact is a finding, not a crash
        return Finding(what, MISSING, f"{type(e).__name__}: {e}"[:400], fix)
    return Finding(what, OK, detail or "")


def render(console, title: str, findings: list[Finding]) -> bool:
    """Print the findings and, for each one not ok, its fix; True when the lab passes."""
    from rich.table import Table

    style = {OK: "green", MISSING: "bold red", INFO: "cyan"}
    table = Table(title=title)
    for col in ("check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(f.what, f"[{style[f.status]}]{f.status}[/]", f.detail)
    console.print(table)
    blocking = [f for f in findings if f.status == MISSING]
    for i, f in enumerate(blocking):
        console.print(f"[bold red]✗[/] {f.what}: {f.detail}")
        if i + 1 == len(blocking) or blocking[i + 1].fix != f.fix:  # one fix under the findings sharing it
            console.print(f"  [cyan]fix:[/] {f.fix}")
    console.print("[green]lab passed[/]" if not blocking else f"[bold red]{len(blocking)} thing(s) missing[/]")
    return not blocking
