"""After a run: the loss curve as a PNG and every checkpoint's chat samples side by side."""

import html
import io
import json
from pathlib import Path

from kit import atomic
from kit.chat_format import last_reply
from kit.train.hooks import SAMPLES_DIR

LOSS_PNG = "loss.png"
SAMPLES_MD = "samples.md"
SAMPLES_HTML = "samples.html"
MAX_COLUMNS = 8  # checkpoints in the table; samples/iter_N.json keeps every round


def loss_history(work_dir: Path) -> list[tuple[int, float]]:
    """(iteration, loss) from every scalars.json mmengine wrote in the work dir (a resume adds one)."""
    points: dict[int, float] = {}
    for scalars in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in scalars.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if "loss" in row and "iter" in row:
                points[int(row["iter"])] = float(row["loss"])  # a resumed run's later rows win
    return sorted(points.items())


def plot_loss(work_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = loss_history(work_dir)
    if not points:
        return None
    iters, losses = zip(*points)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(iters, losses, lw=1.2)
    ax.set(xlabel="iteration", ylabel="training loss", title=f"{Path(work_dir).name}: loss")
    ax.grid(alpha=0.3)
    out = Path(work_dir) / LOSS_PNG
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic.write_bytes(out, buf.getvalue())
    return out


def sample_table(work_dir: Path) -> tuple[list[str], list[int], dict[str, dict[int, str]]]:
    """Questions, checkpoint iterations, and reply[question][iteration]."""
    rounds = []
    for path in Path(work_dir, SAMPLES_DIR).glob("iter_*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        rounds.append((int(data["iter"]), data["samples"]))
    rounds.sort(key=lambda r: r[0])
    questions: list[str] = []
    replies: dict[str, dict[int, str]] = {}
    for step, samples in rounds:
        for s in samples:
            if s["question"] not in replies:
                questions.append(s["question"])
                replies[s["question"]] = {}
            replies[s["question"]][step] = last_reply(s["text"])
    return questions, [r[0] for r in rounds], replies


def pick_columns(steps: list[int], limit: int = MAX_COLUMNS) -> list[int]:
    """At most `limit` checkpoints, evenly spread, the first (untuned) and the last always in."""
    if len(steps) <= limit:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (limit - 1))] for i in range(limit)})


def write_samples(work_dir: Path) -> tuple[Path, Path] | None:
    questions, steps, replies = sample_table(work_dir)
    if not steps:
        return None
    steps = pick_columns(steps)
    heads = [f"iter {s}" + (" (untuned)" if s == 0 else "") for s in steps]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>") or "∅"

    md = ["| question | " + " | ".join(heads) + " |", "|---" * (len(steps) + 1) + "|"]
    md += ["| " + " | ".join([cell(q)] + [cell(replies[q].get(s, "")) for s in steps]) + " |"
           for q in questions]
    rows = "".join(
        "<tr><th>" + html.escape(q) + "</th>"
        + "".join(f"<td>{html.escape(replies[q].get(s, ''))}</td>" for s in steps) + "</tr>"
        for q in questions)
    page = ("<!doctype html><meta charset='utf-8'><title>samples per checkpoint</title><style>"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;"
            "vertical-align:top;max-width:24em}</style><table><tr><th>question</th>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>" + rows + "</table>")
    md_path, html_path = Path(work_dir) / SAMPLES_MD, Path(work_dir) / SAMPLES_HTML
    atomic.write_text(md_path, "\n".join(md) + "\n")
    atomic.write_text(html_path, page)
    return md_path, html_path


def write_report(work_dir: Path) -> dict[str, Path | None]:
    samples = write_samples(work_dir)
    return {"loss_png": plot_loss(work_dir), "samples_md": samples[0] if samples else None,
            "samples_html": samples[1] if samples else None}
