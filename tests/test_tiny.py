"""The embedded tiny InternLM2: loads through trust_remote_code, generates, deterministic."""

import hashlib
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kit.tiny import build_tiny_model


def test_loads_with_remote_code_and_generates(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, trust_remote_code=True)
    assert type(model).__name__ == "InternLM2ForCausalLM"
    assert json.loads((tiny_model / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "你是谁？"}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == "<s><|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids.input_ids.shape[1]


def test_special_tokens_are_single_tokens(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for special in ("<|im_start|>", "<|im_end|>", "<s>", "</s>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    assert tok.encode("你好")[0] == tok.bos_token_id  # InternLM2's tokenizer adds BOS itself
    assert tok.model_input_names == ["input_ids", "attention_mask"]


def test_build_is_deterministic(tmp_path, monkeypatch):
    digests = []
    for run in ("a", "b"):
        monkeypatch.setenv("KIT_CACHE", str(tmp_path / run))
        path = build_tiny_model()
        digests.append({name: hashlib.sha256((path / name).read_bytes()).hexdigest()
                        for name in ("tokenizer.json", "model.safetensors", "config.json")})
    assert digests[0] == digests[1]


def test_copy_to_workdir_is_complete(tmp_path, tiny_model):
    out = build_tiny_model(tmp_path / "base")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert model.config.rope_scaling == {"type": "dynamic", "factor": 2.0}
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert not torch.isnan(next(model.parameters())).any()
