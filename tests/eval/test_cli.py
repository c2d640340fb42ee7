"""`kit eval` as a user runs it: local base, merged tuned, a run's checkpoints; report, Markdown, PNGs."""

import json
import os

from kit_testing import run_kit


def test_kit_eval_with_checkpoints(eval_models, tmp_path):
    out = tmp_path / "eval"
    command = ["eval", "--base", str(eval_models.base), "--tuned", str(eval_models.tuned),
               "--checkpoints", str(eval_models.adapters[0].parent), "--eval-file",
               str(eval_models.eval_file), "--out", str(out), "--max-new-tokens", "16", "--gen-limit", "3"]
    result = run_kit(*command, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "score kept" not in result.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for name, entry in report["metrics"].items():
        assert {"base", "tuned", "better", "description"} <= set(entry), name
    ppl = report["metrics"]["heldout_perplexity"]
    assert ppl["tuned"] < ppl["base"]
    runs = report["checkpoints"]["runs"]
    assert [r["step"] for r in runs] == [4, 12, 40]
    assert runs[-1]["metrics"]["heldout_perplexity"] < runs[0]["metrics"]["heldout_perplexity"] < ppl["base"]
    best = min(runs, key=lambda r: r["metrics"]["heldout_perplexity"])
    assert report["checkpoints"]["suggested"] == best["name"]
    assert f"suggested checkpoint: {best['name']}" in result.stdout
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| Held-out perplexity |" in markdown and "![metrics.png](metrics.png)" in markdown
    import matplotlib.image

    for png in ("metrics.png", "checkpoints.png"):
        height, width, _ = matplotlib.image.imread(out / png).shape
        assert width > 800 and height > 300, png

    # Run again: nothing changed, so every score is kept and the report is the same.
    again = run_kit(*command, env={"COLUMNS": "200"})
    assert again.returncode == 0 and again.stderr.count("score kept") == 5, again.stderr[-3000:]
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["metrics"] == report["metrics"]
    # A re-merged tuned model (newer files) is scored again; the rest is kept.
    config = eval_models.tuned / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000_000))
    changed = run_kit(*command, env={"COLUMNS": "200"})
    assert changed.returncode == 0 and changed.stderr.count("score kept") == 4, changed.stderr[-3000:]
    assert "tuned: unchanged" not in changed.stderr


def test_kit_eval_refuses_bad_input(eval_models, tmp_path):
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    result = run_kit("eval", "--base", str(eval_models.base), "--tuned", str(eval_models.tuned),
                     "--eval-file", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and f"{bad}:1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()
    result = run_kit("eval", "--base", str(eval_models.base), "--eval-file", str(eval_models.eval_file))
    assert result.returncode == 2 and "--tuned" in result.stderr
    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    result = run_kit("eval", "--base", str(eval_models.base), "--tuned", str(eval_models.tuned),
                     "--eval-file", str(eval_models.eval_file), "--out", str(tmp_path / "a-file"))
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "mine"
