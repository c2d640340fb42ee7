"""PNG charts: base vs tuned per metric, each metric over the checkpoints of one run, the drift gate."""

import io
import textwrap
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
# Each bounded metric on its own range (a 1-5 judge score on a 0-1.2 axis says nothing); others open-ended.
SCALES = {**{name: (0, 1) for name in RATES}, "llm_judge": (1, 5)}


def _label(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def _not_computed(ax, entry: dict) -> None:
    """An empty panel would read as a score of zero: say that the metric was not computed, and why."""
    reasons = dict.fromkeys(filter(None, (entry["details"][side].get("reason") for side in ("base", "tuned"))))
    text = "not computed" + (f": {'; '.join(reasons)}" if reasons else "")
    ax.text(0.5, 0.5, textwrap.fill(text, 24), transform=ax.transAxes, ha="center", va="center",
            fontsize=8, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax, name: str, entry: dict) -> None:
    values = [entry["base"], entry["tuned"]]
    ax.bar(["base", "tuned"], [v or 0 for v in values], color=[COLORS["base"], COLORS["tuned"]])
    low, high = SCALES.get(name, (0, max(v for v in values if v is not None)))
    for i, v in enumerate(values):
        ax.text(i, max(v or 0, low) + (high - low) * 0.02, _label(v), ha="center", va="bottom")
    reference = entry.get("reference")
    if reference is not None:
        ax.axhline(reference, color="#2e86ab", ls="--", lw=1, label=f"held-out lines ({_label(reference)})")
        # Below the panel, not inside it: any corner of the plot can hold a bar.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=7, frameon=False)
    ax.set_ylim(low, high + (high - low) * 0.15 or 1)  # headroom for the value labels


def metrics_figure(report: dict):
    names = list(METRICS)
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 3.6), layout="constrained")
    for ax, name in zip(axes, names):
        entry = report["metrics"][name]
        if entry["base"] is None and entry["tuned"] is None:
            _not_computed(ax, entry)
        else:
            _bars(ax, name, entry)
        ax.set_title(_title(name), fontsize=9)
    fig.suptitle(f"{report['character']}: base vs tuned")
    return fig


def metrics_chart(report: dict, path: Path) -> None:
    _save(metrics_figure(report), path)


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


DRIFT_COLORS = {True: "#4c9f70", False: "#d62728", None: "#8c8c8c"}  # check passed, failed, not measured


def _check(comparison: dict, metric: str) -> dict:
    return next(c for c in comparison["checks"] if c["metric"] == metric)


def drift_chart(report: dict, path: Path) -> None:
    """The drift gate: agreement and perplexity change of each stage against the one before it (limits as
    black ticks, failures in red), and the persona metrics of every stage."""
    drift = report["drift"]
    comparisons, stages = drift["comparisons"], drift["stages"]
    labels = [f"{c['stage']}\nvs {c['against']}" for c in comparisons]
    # each panel wide enough for its stage names side by side (five stages: 6.25 in)
    fig, axes = plt.subplots(1, 3, figsize=(max(4.2, 1.25 * len(stages)) * 3, 3.8), layout="constrained")
    for ax, metric, title, scale, unit in (
            (axes[0], "agreement", "Identical greedy replies", 1, ".2f"),
            (axes[1], "perplexity_change", "Held-out perplexity change, %", 100, "+.2f")):
        checks = [_check(c, metric) for c in comparisons]
        values = [0 if k["value"] is None else k["value"] * scale for k in checks]
        ax.bar(labels, values, width=0.5, color=[DRIFT_COLORS[k["passed"]] for k in checks])
        for i, k in enumerate(checks):
            for limit in (k["limit"], -k["limit"]) if metric == "perplexity_change" else (k["limit"],):
                ax.hlines(limit * scale, i - 0.35, i + 0.35, color="black", lw=1.5)
            ax.text(i, values[i], "not measured" if k["value"] is None else format(values[i], unit),
                    ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{title}\nvs the stage before (black: the limit)", fontsize=9)
    axes[0].set_ylim(0, 1.1)
    axes[1].axhline(0, color="#555555", lw=0.8)
    width, xs = 0.4, range(len(stages))
    for offset, metric, color in ((-width / 2, "style_marker_rate", COLORS["tuned"]),
                                  (width / 2, "identity_consistency", "#2e86ab")):
        axes[2].bar([x + offset for x in xs], [s[metric] for s in stages], width, color=color,
                    label=METRICS[metric][0])
    axes[2].set_xticks(list(xs), [s["name"] for s in stages])
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    axes[2].set_ylim(0, 1.1)
    axes[2].set_title("Persona metrics per stage\n(higher is better)", fontsize=9)
    axes[2].legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2, fontsize=7, frameon=False)
    fig.suptitle(f"{report['character']}: drift gate, reference {drift['reference']} "
                 f"({'passed' if drift['passed'] else 'FAILED'})")
    _save(fig, path)


def write_charts(report: dict, out_dir: Path) -> list[str]:
    metrics_chart(report, Path(out_dir) / "metrics.png")
    names = ["metrics.png"]
    if "checkpoints" in report:
        checkpoints_chart(report, Path(out_dir) / "checkpoints.png")
        names.append("checkpoints.png")
    return names
