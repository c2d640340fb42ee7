"""PNG charts: base vs tuned per metric, and each metric over the checkpoints of one run."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402

from kit import atomic  # noqa: E402
from kit.eval.report import METRICS  # noqa: E402

COLORS = {"base": "#8c8c8c", "tuned": "#e4572e"}


def _save(fig, path: Path) -> None:
    # Atomic like every other kit write: a viewer never opens half a PNG.
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def _title(name: str) -> str:
    title, better, _ = METRICS[name]
    return f"{title}\n({better} is better)"


RATES = ("style_marker_rate", "identity_consistency", "general_sanity")  # shares in [0, 1]


def _label(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def metrics_chart(report: dict, path: Path) -> None:
    names = list(METRICS)
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 3.6), layout="constrained")
    for ax, name in zip(axes, names):
        entry = report["metrics"][name]
        values = [entry["base"], entry["tuned"]]
        ax.bar(["base", "tuned"], [v or 0 for v in values], color=[COLORS["base"], COLORS["tuned"]])
        top = max([v for v in values if v is not None] or [1])
        for i, v in enumerate(values):
            ax.text(i, (v or 0) + top * 0.02, _label(v), ha="center", va="bottom")
        reference = entry.get("reference")
        if reference is not None:
            ax.axhline(reference, color="#2e86ab", ls="--", lw=1, label="held-out lines")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_ylim(0, 1.1 if name in RATES else top * 1.2)
        ax.set_title(_title(name), fontsize=9)
    fig.suptitle(f"{report['character']}: base vs tuned")
    _save(fig, path)


def checkpoints_chart(report: dict, path: Path) -> None:
    runs, suggested = report["checkpoints"]["runs"], report["checkpoints"]["suggested"]
    names = [n for n in METRICS if any(r["metrics"][n] is not None for r in runs)]
    xs = [r["step"] if r["step"] is not None else i for i, r in enumerate(runs)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], names):
        ys = [r["metrics"][name] for r in runs]
        ax.plot(xs, [float("nan") if y is None else y for y in ys], "o-", color=COLORS["tuned"],
                label="checkpoints")
        base = report["metrics"][name]["base"]
        shown = [y for y in ys if y is not None]
        if name not in RATES and shown:
            # Zoom on the checkpoints: the minimum that marks overfitting is the point of this chart.
            low, high = min(shown), max(shown)
            pad = (high - low) * 0.15 or abs(high) * 0.05 or 1
            ax.set_ylim(low - pad, high + pad)
            if base is not None and not low - pad <= base <= high + pad:
                ax.text(0.02, 0.97, f"base: {_label(base)} (off scale)", transform=ax.transAxes,
                        va="top", fontsize=8, color=COLORS["base"])
                base = None
        if base is not None:
            ax.axhline(base, color=COLORS["base"], ls="--", lw=1, label="base")
        for x, r, y in zip(xs, runs, ys):
            if r["name"] == suggested and y is not None:
                ax.plot([x], [y], "*", ms=16, color="#2e86ab", label=f"suggested: {suggested}")
        if name in RATES:
            ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("step")
        ax.set_title(_title(name), fontsize=9)
    # One legend for the figure: a line may be off scale (hence unlabelled) in any single panel.
    labelled = {}
    for ax in axes[0]:
        labelled.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(labelled.values(), labelled.keys(), loc="outside lower center", ncols=len(labelled), fontsize=8)
    fig.suptitle(f"{report['character']}: metrics over checkpoints")
    _save(fig, path)


def write_charts(report: dict, out_dir: Path) -> list[str]:
    metrics_chart(report, Path(out_dir) / "metrics.png")
    names = ["metrics.png"]
    if "checkpoints" in report:
        checkpoints_chart(report, Path(out_dir) / "checkpoints.png")
        names.append("checkpoints.png")
    return names
