"""Reading XTuner's (mmengine's) log lines as they stream: iteration, total, loss, ETA."""

import re
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# 11/22 18:34:03 - mmengine - INFO - Iter(train) [30/72]  lr: 6.7e-04  eta: 0:00:04  ...  loss: 6.3896
ITER_LINE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\]\s+(.*)")
FIELD = re.compile(r"(\w+): (\S+)")


@dataclass(frozen=True)
class IterLog:
    iter: int
    total: int
    loss: float | None
    eta: str
    lr: float | None
    seconds: float | None  # per iteration, averaged over the logging window


def parse_iter_line(line: str) -> IterLog | None:
    match = ITER_LINE.search(line)
    if not match:
        return None
    fields = dict(FIELD.findall(match.group(3)))

    def number(key: str) -> float | None:
        try:
            return float(fields[key])
        except (KeyError, ValueError):
            return None

    return IterLog(int(match.group(1)), int(match.group(2)), number("loss"), fields.get("eta", "?"),
                   number("lr"), number("time"))


def training_progress() -> Progress:
    return Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss [cyan]{task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
        TextColumn("eta [magenta]{task.fields[eta]}"), TimeElapsedColumn(),
        transient=False,
    )
