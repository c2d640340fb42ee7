"""`kit train` end to end on CPU: the recipe's CPU variant on the tiny model, then --resume."""

import json
import random
from pathlib import Path

from kit_testing import run_kit

from kit.persona import persona_for
from kit.train.report import loss_history


def write_fixture_data(folder: Path, n: int = 120, seed: int = 0) -> Path:
    """A small dataset in `kit data build`'s form (OpenAI messages, the system prompt in each)."""
    persona = persona_for("bajie")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append({"messages": [
            {"role": "system", "content": persona.system_prompt},
            {"role": "user", "content": rng.choice(persona.probe_questions)},
            {"role": "assistant", "content": rng.choice(persona.sample_lines) + rng.choice(persona.catchphrases)},
        ]})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_kit_train_cpu_progress_report_and_resume(tiny_model, tmp_path):
    data = write_fixture_data(tmp_path / "data")
    work = tmp_path / "work"
    args = ["train", "recipes/bajie.py", "--cpu", "--base", str(tiny_model), "--data-dir", str(data),
            "--work-dir", str(work)]
    first = run_kit(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "data ok" in first.stderr and "memory plan" in first.stderr
    ckpts = sorted(work.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    assert len(ckpts) >= 3, ckpts
    losses = [loss for _, loss in loss_history(work)]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses  # it learns
    assert (work / "loss.png").stat().st_size > 1000
    header = (work / "samples.md").read_text(encoding="utf-8").splitlines()[0]
    first_iter = int(ckpts[0].stem.split("_")[1])  # the recipe's save/eval interval
    assert "iter 0 (untuned)" in header and f"iter {first_iter}" in header
    sampled = json.loads((work / "samples" / f"iter_{first_iter}.json").read_text())
    assert sampled["samples"][0]["question"] == "你是谁？"

    # An interrupted run: only the first two checkpoints survived. --resume continues from the newest.
    last = int(ckpts[-1].stem.split("_")[1])
    for ckpt in ckpts[2:]:
        ckpt.unlink()
    resumed = run_kit(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {ckpts[1]}" in resumed.stderr
    assert (work / f"iter_{last}.pth").exists()
    log = (work / "train_output.log").read_text(encoding="utf-8")
    assert f"Iter(train) [{int(ckpts[1].stem.split('_')[1]) + 1:>{len(str(last))}}/{last}]" in log
