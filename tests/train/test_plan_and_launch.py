"""Memory plan against measured peaks; the XTuner command; log parsing; failure detection; report."""

import json
import sys

import pytest

from kit.errors import KitError
from kit.train.launch import cap_fraction
from kit.train.memory_plan import INTERNLM2_1_8B, Setup, budget_mib, parse_memory_mib, plan_memory
from kit.train.preflight import check_fit
from kit.train.progress import parse_iter_line
from kit.train.report import pick_columns, write_report
from kit.train.run import run_xtuner, write_deepspeed_config, xtuner_command

# Measured on an H100 (STACK.md; bench/results/train_gpu.json): XTuner's stock QLoRA recipe and
# recipes/bajie.py, InternLM2-1.8B shape, one packed 2048-token row: 6,279 MiB max allocated.
MEASURED_QLORA_MIB = 6279


def test_qlora_plan_matches_the_measured_peak_and_fits_a_10_percent_slice():
    plan = plan_memory(INTERNLM2_1_8B, Setup("qlora"))
    assert abs(plan.peak_mib - MEASURED_QLORA_MIB) / MEASURED_QLORA_MIB < 0.05
    assert plan.fits(0.1 * 81920)  # A100 80GB, 10%
    assert "fits" in check_fit(plan, 0.1, 81920)


def test_fast_plan_matches_the_peak_measured_on_the_h200_and_refuses_what_did_not_fit():
    # bench/results/2026-12-02-GPU-train-peers.json: kit.train.fast, 8 packed rows per step (16,384
    # tokens), 5.99 GiB allocated; stock XTuner 6.13 GiB. 16 rows per step ran out of an 8 GiB cap
    # (bench/results/2026-12-02-GPU-train-peers-levers.json, `failed`).
    for setup, measured_gib in ((Setup("qlora", batch=8, fast=True), 5.986), (Setup("qlora"), 6.131)):
        plan = plan_memory(INTERNLM2_1_8B, setup)
        assert abs(plan.peak_mib - measured_gib * 1024) / (measured_gib * 1024) < 0.10
        assert plan.fits(8192)
    assert not plan_memory(INTERNLM2_1_8B, Setup("qlora", batch=16, fast=True)).fits(8192)


def test_lora_and_full_need_more_and_are_refused_in_the_slice():
    qlora, lora, full = (plan_memory(INTERNLM2_1_8B, Setup(m)) for m in ("qlora", "lora", "full"))
    assert qlora.peak_mib < lora.peak_mib < full.peak_mib
    with pytest.raises(KitError, match="will not fit"):
        check_fit(full, 0.1, 81920)
    assert check_fit(full, 1.0, 81920)  # the whole A100 is enough for a full fine-tune
    shorter = plan_memory(INTERNLM2_1_8B, Setup("qlora", seq_len=1024))
    assert shorter.peak_mib < qlora.peak_mib


def test_an_absolute_cap_is_the_same_slice_on_any_card(monkeypatch):
    plan = plan_memory(INTERNLM2_1_8B, Setup("qlora"))
    assert parse_memory_mib("8GiB") == 8192 and parse_memory_mib("8 gb") == pytest.approx(7629.4, abs=0.1)
    for bad in ("8", "eight GiB", "8TB", "0GiB", "-1GiB"):
        with pytest.raises(ValueError, match="e.g. 8GiB"):
            parse_memory_mib(bad)
    # 8 GiB on an 80 GB A100 and on a 141 GB H200 alike; a fraction would differ between them.
    assert budget_mib(None, 81920, 8192) == budget_mib(None, 143771, 8192) == 8192
    assert budget_mib(0.1, 143771) > 14000
    assert "fits" in check_fit(plan, None, 143771, 8192)
    with pytest.raises(KitError, match="--gpu-memory cap"):
        check_fit(plan, None, 143771, 4096)

    class Card:  # what launch.py reads of torch.cuda: one H200
        is_available = staticmethod(lambda: True)
        get_device_properties = staticmethod(lambda rank: type("P", (), {"total_memory": 143771 * 2**20}))

    fake_torch = type("T", (), {"cuda": Card})
    monkeypatch.setenv("KIT_GPU_MEMORY_MIB", "8192")
    assert cap_fraction(fake_torch, 0) == pytest.approx(8192 / 143771)
    monkeypatch.delenv("KIT_GPU_MEMORY_MIB")
    monkeypatch.setenv("KIT_GPU_FRACTION", "0.1")
    assert cap_fraction(fake_torch, 0) == 0.1


def test_xtuner_command_single_multi_gpu_deepspeed_resume(tmp_path):
    one = xtuner_command(tmp_path / "r.py", tmp_path / "w")
    assert one[:3] == [sys.executable, "-m", "kit.train.launch"] and "--launcher" not in one
    ds = write_deepspeed_config("zero2", tmp_path / "w")
    zero = json.loads(ds.read_text())["zero_optimization"]
    assert zero["stage"] == 2 and zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == 50_000_000
    many = xtuner_command(tmp_path / "r.py", tmp_path / "w", nproc=4, deepspeed=ds,
                          resume_from=tmp_path / "w" / "iter_10.pth", port=29512)
    assert many[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in many and "--master_port=29512" in many
    assert many[many.index("--deepspeed") + 1] == str(ds)
    assert many[many.index("--resume") + 1].endswith("iter_10.pth")
    assert many[-2:] == ["--launcher", "pytorch"]
    one_ds = xtuner_command(tmp_path / "r.py", tmp_path / "w", nproc=1, deepspeed=ds, port=29513)
    assert one_ds[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=1" in one_ds
    assert one_ds[-2:] == ["--launcher", "pytorch"]


def test_parse_iter_line():
    line = ("11/22 18:34:03 - mmengine - INFO - Iter(train) [ 30/72]  lr: 6.7569e-04  eta: 0:00:04  "
            "time: 0.2535  data_time: 0.2373  grad_norm: 3.9721  loss: 6.3896")
    it = parse_iter_line(line)
    assert (it.iter, it.total, it.loss, it.eta, it.seconds) == (30, 72, 6.3896, "0:00:04", 0.2535)
    assert parse_iter_line("11/22 - mmengine - INFO - Saving checkpoint at 10 iterations") is None


def test_failures_are_caught_with_a_hint(tmp_path):
    crash = [sys.executable, "-c", "print('torch.OutOfMemoryError: CUDA out of memory'); raise SystemExit(1)"]
    with pytest.raises(KitError, match="exit code 1") as e:
        run_xtuner(crash, tmp_path, {})
    assert "max_length" in e.value.fix
    # Under torchrun a rank's error scrolls away behind the launcher's ChildFailedError (H200, DeepSpeed).
    torchrun = "print('[rank0]: torch.OutOfMemoryError: CUDA out of memory.'); " + \
        "[print(f'launcher line {i}') for i in range(40)]; print('ChildFailedError:'); raise SystemExit(1)"
    with pytest.raises(KitError, match="first error of a rank: .rank0.: torch.OutOfMemoryError") as e:
        run_xtuner([sys.executable, "-c", torchrun], tmp_path, {})
    assert "--gpu-memory" in e.value.fix
    # XTuner's entry point exits 0 on a crash: no new checkpoint means failure too.
    with pytest.raises(KitError, match="without writing a new checkpoint"):
        run_xtuner([sys.executable, "-c", "print('Traceback ...')"], tmp_path, {})


def test_report_puts_checkpoints_side_by_side(tmp_path):
    vis = tmp_path / "20260101_000000" / "vis_data"
    vis.mkdir(parents=True)
    vis.joinpath("scalars.json").write_text(
        "".join(json.dumps({"iter": i, "loss": 5.0 - i / 10}) + "\n" for i in range(1, 21)))
    samples = tmp_path / "samples"
    samples.mkdir()
    for step, reply in [(0, "胡言乱语"), (10, "俺老猪饿了"), (20, "俺老猪|饿了")]:
        text = f"<s><|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n{reply}<|im_end|>"
        samples.joinpath(f"iter_{step}.json").write_text(
            json.dumps({"iter": step, "samples": [{"question": "你是谁？", "text": text}]}))
    report = write_report(tmp_path)
    md = report["samples_md"].read_text(encoding="utf-8").splitlines()
    assert md[0] == "| question | iter 0 (untuned) | iter 10 | iter 20 |"
    assert md[2] == "| 你是谁？ | 胡言乱语 | 俺老猪饿了 | 俺老猪\\|饿了 |"
    assert report["loss_png"].stat().st_size > 1000
    assert "<td>俺老猪|饿了</td>" in report["samples_html"].read_text(encoding="utf-8")


def test_long_runs_keep_the_table_readable():
    steps = list(range(0, 460, 10))
    picked = pick_columns(steps, 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 450
    assert pick_columns([0, 10, 20], 8) == [0, 10, 20]


def test_preflight_refuses_a_base_path_that_is_no_model(tmp_path):
    """Before: a missing --base passed preflight and failed a minute later inside transformers."""
    from kit_testing import run_kit

    (tmp_path / "empty").mkdir()
    for base, problem in [(tmp_path / "nonexistent", "does not exist"),
                          (tmp_path / "empty", "is not a model folder (no config.json)")]:
        proc = run_kit("train", "recipes/bajie.py", "--cpu", "--base", str(base), "--plan-only")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"base model {base}" in proc.stderr and problem in proc.stderr, proc.stderr
        assert "--base" in proc.stderr and "memory plan" not in proc.stderr


def test_a_small_dataset_gets_checkpoints_to_pick_from_and_a_warning(tiny_model, tmp_path):
    """Lab 7 with a first small text (36 samples) saved one checkpoint, so none could be picked."""
    from pathlib import Path

    from kit_testing import ROOT, run_kit

    from kit.train.preflight import load_recipe
    from kit.train.run import recipe_env

    from kit.persona import persona_for

    system = persona_for("bajie").system_prompt
    row = json.dumps({"messages": [{"role": "system", "content": system}, {"role": "user", "content": "你是谁？"},
                                   {"role": "assistant", "content": "俺老猪是也。"}]}, ensure_ascii=False)
    recipe = ROOT / "recipes" / "bajie.py"
    for rows, interval in ((36, 21), (362, 100)):  # 36 x 6 epochs / ~2 packed per row = ~108 iterations
        data = tmp_path / str(rows)
        data.mkdir()
        (data / "train.jsonl").write_text((row + "\n") * rows, encoding="utf-8")
        cfg = load_recipe(Path(recipe), recipe_env(tiny_model, data, cpu=True))
        assert cfg.default_hooks.checkpoint.interval == interval
        assert [h for h in cfg.custom_hooks if h.get("every_n_iters") == interval]
    plan = run_kit("train", str(recipe), "--cpu", "--base", str(tiny_model), "--data-dir", str(tmp_path / "36"),
                   "--plan-only", env={"COLUMNS": "300"})
    assert plan.returncode == 0, plan.stderr
    assert "36 samples is little to learn a character's voice from" in plan.stderr, plan.stderr
