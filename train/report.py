"""After a run: the loss curve as a PNG and every checkpoint's chat samples side by side."""

import html
import io
import json
import re
from pathlib import Path

from kit import atomic
from kit.chat_format import last_reply
from kit.cjk_font import drawable
from kit.errors import KitError
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


CHARACTER_LINE = re.compile(r"""^character\s*=\s*["']([^"']+)["']""", re.M)


def run_character(work_dir: Path) -> str | None:
    """The character id in the recipe XTuner dumped into the work dir (`character = "bajie"`)."""
    for config in sorted(Path(work_dir).glob("*.py")):
        found = CHARACTER_LINE.search(config.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    return None


def run_label(work_dir: Path) -> str:
    """Which run: the recipe XTuner dumped there and the work dir's last two parts, e.g. bajie.py · lab/work."""
    work_dir = Path(work_dir).resolve()
    configs = [p.name for p in sorted(work_dir.glob("*.py"))]
    return " · ".join(configs[:1] + [f"{work_dir.parent.name}/{work_dir.name}"])


def _who(work_dirs: list[Path]) -> tuple[str, list[str]]:
    """The runs' characters by display name (猪八戒) if a font here draws it, else by id (bajie)."""
    from kit.persona import persona_for

    ids = sorted({c for c in map(run_character, work_dirs) if c})
    names = []
    for character in ids:
        try:
            names.append(persona_for(character).name)
        except KitError:  # a run made from a persona that is gone: the id still says who it was
            names.append(character)
    return drawable(" / ".join(names), " / ".join(ids))


def loss_figure(work_dirs: list[Path]):
    """One loss curve per run on shared axes; titled with the character and, for one run, the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for work_dir in work_dirs:
        iters, losses = zip(*loss_history(work_dir))
        ax.plot(iters, losses, lw=1.2, label=run_label(work_dir))
    who, fonts = _who(work_dirs)
    what = run_label(work_dirs[0]) if len(work_dirs) == 1 else "training loss"
    ax.set_title(" · ".join(filter(None, [who, what])), fontfamily=fonts)
    if len(work_dirs) > 1:
        ax.legend(fontsize=8)  # the runs are told apart by their labels
    ax.set(xlabel="iteration", ylabel="training loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # whole steps
    ax.grid(alpha=0.3)
    return fig


def save_loss(work_dirs: list[Path], out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = loss_figure(work_dirs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic.write_bytes(out, buf.getvalue())
    return out


def plot_loss(work_dir: Path) -> Path | None:
    if not loss_history(work_dir):
        return None
    return save_loss([work_dir], Path(work_dir) / LOSS_PNG)


def compare_loss(work_dirs: list[Path], out: Path) -> Path:
    """Several runs' loss curves on one chart, e.g. the same recipe at r=16 and at r=32."""
    for work_dir in work_dirs:
        if not loss_history(work_dir):
            raise KitError(f"{work_dir}: no loss history (*/vis_data/scalars.json)",
                           "pass the --work-dir of a `kit train` run, e.g. work_dirs/bajie")
    return save_loss(work_dirs, out)


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
