"""The loss chart: who and which run it shows, whole-step ticks, and several runs overlaid."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from kit_testing import run_kit

from kit import cjk_font
from kit.train.report import loss_figure, plot_loss


def fake_run(work: Path, losses: list[float], recipe: str = "bajie.py") -> Path:
    """A work dir as XTuner leaves it: the dumped recipe and mmengine's scalars.json."""
    vis = work / "20260101_000000" / "vis_data"
    vis.mkdir(parents=True)
    vis.joinpath("scalars.json").write_text(
        "".join(json.dumps({"iter": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses)))
    (work / recipe).write_text("lora_r = 32\ncharacter = 'bajie'\n", encoding="utf-8")
    return work


@pytest.fixture
def no_cjk_font(monkeypatch):
    monkeypatch.setattr(cjk_font, "cjk_font", lambda: None)


def test_title_names_the_character_and_the_run(tmp_path, monkeypatch):
    """Before: the title was `work: loss`, whoever was trained by whichever recipe."""
    work = fake_run(tmp_path / "lab" / "work", [5.0, 4.0, 3.0])
    monkeypatch.setattr(cjk_font, "cjk_font", lambda: "DejaVu Sans")  # stands in for a CJK font
    fig = loss_figure([work])
    title = fig.axes[0].title
    assert title.get_text() == "猪八戒 · bajie.py · lab/work"
    assert title.get_fontfamily()[0] == "DejaVu Sans"
    plt.close(fig)


def test_without_a_cjk_font_the_title_falls_back_to_the_id(tmp_path, no_cjk_font):
    work = fake_run(tmp_path / "lab" / "work", [5.0, 4.0, 3.0])
    fig = loss_figure([work])
    assert fig.axes[0].get_title() == "bajie · bajie.py · lab/work"  # no boxes where 猪八戒 should be
    plt.close(fig)


def test_iteration_ticks_are_whole_steps(tmp_path, no_cjk_font):
    """Before: five iterations got ticks at 1.5, 2.5, …"""
    fig = loss_figure([fake_run(tmp_path / "work", [5.0, 4.5, 4.0, 3.0, 2.0])])
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 3 and all(t == int(t) for t in ticks), ticks
    plt.close(fig)


def test_plot_loss_writes_nothing_without_a_history(tmp_path):
    assert plot_loss(tmp_path) is None


def test_kit_loss_overlays_two_runs(tmp_path):
    r32 = fake_run(tmp_path / "lab" / "work", [5.0, 4.0, 3.0])
    r16 = fake_run(tmp_path / "lab" / "work-r16", [5.0, 4.5, 4.0], recipe="bajie_r16.py")
    fig = loss_figure([r32, r16])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "bajie.py · lab/work", "bajie_r16.py · lab/work-r16"]
    assert len(ax.get_lines()) == 2
    plt.close(fig)

    out = tmp_path / "r16-vs-r32.png"
    done = run_kit("loss", str(r32), str(r16), "-o", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.stat().st_size > 1000
    empty = run_kit("loss", str(r32), str(tmp_path), "-o", str(out))
    assert empty.returncode == 2 and "no loss history" in empty.stderr
