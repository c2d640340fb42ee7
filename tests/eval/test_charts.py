"""metrics.png: every bar visible, each metric on its own scale, a metric not computed says so."""

import matplotlib.pyplot as plt
import pytest

from kit.eval.charts import metrics_figure
from kit.eval.report import METRICS


def entry(name: str, base, tuned, reason=None, **extra) -> dict:
    title, better, description = METRICS[name]
    return {"base": base, "tuned": tuned, "title": title, "better": better, "description": description,
            "details": {"base": {"reason": reason}, "tuned": {"reason": reason}}, **extra}


def report(judge=(None, None)) -> dict:
    """The demo's figures: the tuned style rate sits right where a lower-right legend was drawn."""
    return {"character": "bajie", "metrics": {
        "heldout_perplexity": entry("heldout_perplexity", 40109.2, 2547.4),
        "style_marker_rate": entry("style_marker_rate", 0.0, 0.722, reference=0.625),
        "identity_consistency": entry("identity_consistency", 0.0, 1.0),
        "general_sanity": entry("general_sanity", 0.0, 0.0),
        "llm_judge": entry("llm_judge", *judge, reason=None if judge[0] else "no --judge-url given"),
    }}


def panel(fig, name: str):
    return next(ax for ax in fig.axes if ax.get_title().startswith(METRICS[name][0]))


@pytest.fixture
def figure():
    figs = []

    def make(**kwargs):
        figs.append(metrics_figure(report(**kwargs)))
        figs[-1].canvas.draw()  # lays out the legend, so its place can be checked
        return figs[-1]

    yield make
    for fig in figs:
        plt.close(fig)


def test_the_legend_hides_no_bar(figure):
    """Before: the `held-out lines` legend sat on the tuned style-marker bar."""
    ax = panel(figure(), "style_marker_rate")
    legend = ax.get_legend().get_window_extent()
    assert ax.patches and not any(legend.overlaps(bar.get_window_extent()) for bar in ax.patches)


def test_the_judge_score_is_drawn_on_its_1_to_5_scale(figure):
    """Before: a 1-5 mean score got a 0-1.2 axis."""
    low, high = panel(figure(judge=(2.1, 4.4)), "llm_judge").get_ylim()
    assert low == 1 and 5 <= high < 6


def test_rates_stay_on_0_to_1(figure):
    low, high = panel(figure(), "identity_consistency").get_ylim()
    assert low == 0 and 1 <= high < 1.2


def test_a_metric_not_computed_says_why_instead_of_an_empty_panel(figure):
    ax = panel(figure(), "llm_judge")
    words = " ".join(t.get_text().replace("\n", " ") for t in ax.texts)
    assert words == "not computed: no --judge-url given"
    assert not ax.patches  # no zero-height bars that read as a score of 0
    sanity = panel(figure(), "general_sanity")  # computed, and 0: bars and values, no note
    assert len(sanity.patches) == 2 and "not computed" not in " ".join(t.get_text() for t in sanity.texts)
