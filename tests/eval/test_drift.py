"""The drift gate, `kit eval --drift`, on the demo: its adapter and merged model are one model, a merged
copy with perturbed weights fails the gate with exit 1 naming the stage and the metric, and the merged
model served by the embedded server is the same model as its folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from kit.errors import KitError
from kit.eval.drift import Stage, parse_stage, parse_stages
from kit_testing import ROOT, run_kit

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))  # the serve tests' helpers
from serve_testing import free_port, wait_http  # noqa: E402


def drift(demo: Path, out: Path, *stages: str):
    return run_kit("eval", "--drift", *stages, "--eval-file", str(demo / "data" / "eval.jsonl"),
                   "--out", str(out), "--max-new-tokens", "32", env={"COLUMNS": "200"})


def test_stages_are_named_and_quantized_ones_known(tmp_path):
    assert parse_stage("kv-int8=http://127.0.0.1:1/v1#tuned") == Stage("kv-int8", "http://127.0.0.1:1/v1#tuned", True)
    assert parse_stage("http://127.0.0.1:1/v1#bajie-w4a16").name == "bajie-w4a16"
    assert parse_stage("http://127.0.0.1:1/v1?x=1").name == "127.0.0.1:1"
    merged = tmp_path / "merged"
    merged.mkdir()
    assert (parse_stage(str(merged)).name, parse_stage(str(merged)).quantized) == ("merged", False)
    with pytest.raises(KitError, match="two drift stages share a name"):
        parse_stages([str(merged), str(merged)])
    with pytest.raises(KitError, match="at least two stages"):
        parse_stages([str(merged)])
    (merged / "kit_quant.json").write_text("{}", encoding="utf-8")
    with pytest.raises(KitError, match="kit serve --tuned"):
        parse_stage(f"w4a16={merged}")


def test_demo_adapter_and_merged_model_do_not_drift(make_demo, tmp_path):
    demo, out = make_demo[0], tmp_path / "eval"
    result = drift(demo, out, str(demo / "adapter"), str(demo / "merged"))  # the base: kit_adapter.json's
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    section = json.loads((out / "report.json").read_text(encoding="utf-8"))["drift"]
    assert section["passed"] and section["reference"] == "adapter"
    assert section["stages"][0]["base"] == str(demo / "base")
    merged = section["comparisons"][0]
    assert merged["stage"] == "merged" and merged["agreement"] >= 0.9
    assert abs(merged["perplexity_change"]) < 1e-3
    assert "## Drift gate: passed" in (out / "report.md").read_text(encoding="utf-8")
    height, width, _ = matplotlib.image.imread(out / "drift.png").shape
    assert width > 800 and height > 300


def test_perturbed_weights_fail_the_gate_naming_the_stage(make_demo, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    demo, out = make_demo[0], tmp_path / "eval"
    perturbed = shutil.copytree(demo / "merged", tmp_path / "perturbed")
    weights = load_file(perturbed / "model.safetensors")
    noise = torch.Generator().manual_seed(0)
    for name, w in weights.items():
        if name.endswith("attention.wqkv.weight"):  # the query/key/value projections of every layer
            weights[name] = w + torch.randn(w.shape, generator=noise) * w.std() * 0.5
    save_file(weights, perturbed / "model.safetensors", metadata={"format": "pt"})
    # A persona eval already in --out keeps its metrics; the drift section goes beside them.
    out.mkdir()
    shutil.copy(demo / "eval" / "report.json", out / "report.json")

    result = drift(demo, out, str(demo / "merged"), str(perturbed))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "drifted: perturbed vs merged: agreement" in result.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "heldout_perplexity" in report["metrics"] and report["drift"]["passed"] is False
    failed = [c["metric"] for c in report["drift"]["comparisons"][0]["checks"] if c["passed"] is False]
    assert "agreement" in failed
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| Held-out perplexity |" in markdown and "## Drift gate: FAILED" in markdown
    assert "- perturbed vs merged: agreement" in markdown and report["charts"][-1] == "drift.png"


def test_served_merged_model_is_the_folder(make_demo, tmp_path):
    demo, out, port = make_demo[0], tmp_path / "eval", free_port()
    server = subprocess.Popen([sys.executable, "-m", "kit.serve.hf_server", "--model", f"tuned={demo / 'merged'}",
                               "--port", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=server)
        result = drift(demo, out, str(demo / "merged"), f"served=http://127.0.0.1:{port}/v1#tuned")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    served = json.loads((out / "report.json").read_text(encoding="utf-8"))["drift"]["comparisons"][0]
    assert served["stage"] == "served" and served["agreement"] >= 0.9
    assert served["perplexity_change"] is not None and abs(served["perplexity_change"]) < 1e-3


def test_a_server_without_prompt_logprobs_is_gated_without_perplexity(make_demo, serve, tmp_path):
    """LMDeploy's api_server gives no prompt log-probs: the perplexity check is 'not measured', not failed."""
    demo, out = make_demo[0], tmp_path / "eval"
    server = serve(demo / "merged", echo=False)
    result = drift(demo, out, str(demo / "merged"), f"w4a16={server.url}#fake")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "note: w4a16: perplexity_change not measured" in result.stdout
    served = json.loads((out / "report.json").read_text(encoding="utf-8"))["drift"]["comparisons"][0]
    assert served["quantized"] and served["perplexity_change"] is None
    assert served["agreement"] >= 0.5
