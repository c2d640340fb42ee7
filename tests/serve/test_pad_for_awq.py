"""bench/pad_for_awq.py: the demo's trained models, widened for AWQ, must still be the same model (the
GPU deploy bench's drift run rests on it)."""

import json
import subprocess
import sys

import torch
from kit_testing import ROOT


def _logits(path, adapter=None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, torch_dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    ids = AutoTokenizer.from_pretrained(path)("你是谁？俺老猪在高老庄", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits[0]


def test_widened_models_keep_the_demos_function(make_demo, tmp_path):
    demo, _ = make_demo
    out = tmp_path / "padded"
    subprocess.run([sys.executable, str(ROOT / "bench" / "pad_for_awq.py"), str(demo), str(out), "--dtype",
                    "float32"], check=True, capture_output=True, text=True)
    config = json.loads((out / "merged" / "config.json").read_text())
    assert config["intermediate_size"] % 128 == 0 and config["hidden_size"] % 128 == 0  # AWQ's groups fit
    assert json.loads((out / "merged" / "kit_merge.json").read_text())["adapter"] == str(out / "adapter")

    before = _logits(demo / "merged")
    merged = _logits(out / "merged")
    on_base = _logits(out / "base", out / "adapter")
    scale = before.abs().max()
    assert (merged - before).abs().max() < 1e-3 * scale  # the new channels add next to nothing
    assert (on_base - merged).abs().max() < 1e-4 * scale  # adapter on the widened base == widened merge
    assert (merged.argmax(-1) == before.argmax(-1)).all()
