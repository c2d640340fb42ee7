"""LMDeploy command construction, KV-cache sizing and the AWQ driver, all on CPU (no lmdeploy here)."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from kit_testing import run_kit

from kit.errors import KitError
from kit.persona import persona_for
from kit.serve import lmdeploy_cmd as lm
from kit.serve import tether
from kit.serve.awq_driver import local_loader
from kit.serve.plan import plan_servers
from kit.serve.quantize import AwqSettings, DRIVER, driver_command
from kit.serve.settings import ServeSettings

TETHER = Path(tether.__file__).resolve()


def test_chat_template_is_the_persona_chatml():
    persona = persona_for("bajie")
    cfg = lm.chat_template_config(persona)
    assert cfg["meta_instruction"] == persona.system_prompt
    assert "InternLM" not in json.dumps(cfg, ensure_ascii=False)
    # The prompt LMDeploy's BaseChatTemplate.messages2prompt would build for one user turn:
    prompt = (cfg["system"] + cfg["meta_instruction"] + cfg["eosys"] + cfg["user"] + "你是谁？" + cfg["eoh"]
              + cfg["assistant"])
    from kit import chat_format

    chatml = chat_format.render([{"role": "system", "content": persona.system_prompt},
                                 {"role": "user", "content": "你是谁？"}], generation_prompt=True)
    assert prompt == chatml
    assert cfg["stop_words"] == ["<|im_end|>"] and "<s>" not in json.dumps(cfg)


def test_cache_fractions_leave_room_for_the_second_server():
    free, weights = 8192.0, [3600.0, 3600.0]  # a 10% A100 slice, two fp16 1.8B models
    with pytest.raises(KitError, match="need about"):
        lm.cache_fractions(free, weights)
    fractions = lm.cache_fractions(24576.0, weights)  # 30% slice
    budget = (24576 - 7200 - 2 * lm.RESERVE_MIB) / 2
    # Replay what LMDeploy does: each server takes its fraction of what is free after its weights.
    left = 24576.0
    for w, f in zip(weights, fractions):
        left -= w
        assert f * left == pytest.approx(budget, rel=1e-3)
        left -= f * left + lm.RESERVE_MIB
    assert abs(left) < 50  # fractions are rounded to 3 decimals
    assert lm.cache_fractions(80000.0, [3600.0]) == [0.9]
    # A 30% slice of a mostly free 80 GB card: the fractions are of the card's free memory.
    sliced = lm.cache_fractions(80000.0, weights, limit_mib=24000.0)
    budget = (24000 - 7200 - 2 * lm.RESERVE_MIB) / 2
    assert sliced[0] * (80000 - 3600) == pytest.approx(budget, abs=80)  # 3-decimal rounding


def test_api_server_command(tiny_model, tmp_path):
    awq = tmp_path / "awq"
    shutil.copytree(tiny_model, awq)
    cfg = json.loads((awq / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (awq / "config.json").write_text(json.dumps(cfg))
    template = tmp_path / "t.json"
    server = lm.ApiServer("tuned", awq, 23334, 0.42, "pytorch", "int8")
    cmd = lm.api_server_command(Path("/env/bin/python"), server, template, api_key_env="MY_KEY")
    # LMDeploy runs tethered to kit serve; the key reaches --api-keys from $MY_KEY inside the child.
    assert cmd[:5] == ["/env/bin/python", str(TETHER), "--arg-from-env", "--api-keys", "MY_KEY"]
    assert cmd[5:9] == ["lmdeploy", "serve", "api_server", str(awq)]
    flags = dict(zip(cmd[9::1], cmd[10::1]))
    assert flags["--backend"] == "pytorch" and flags["--model-name"] == "tuned"
    assert flags["--chat-template"] == str(template) and flags["--cache-max-entry-count"] == "0.42"
    assert flags["--server-name"] == "127.0.0.1" and flags["--server-port"] == "23334"
    assert flags["--quant-policy"] == "8" and flags["--model-format"] == "awq"
    assert "--trust-remote-code" in cmd and "--api-keys" not in cmd[5:]
    plain = lm.api_server_command(Path("p"), lm.ApiServer("base", tiny_model, 1, 0.5), template)
    assert "--quant-policy" not in plain and "--model-format" not in plain and "--arg-from-env" not in plain


def test_lmdeploy_gets_the_api_key_where_ps_cannot_show_it(tiny_model, tmp_path):
    """`--api-keys KEY` on LMDeploy's command line is readable by every user of the host (`ps`): the
    tether appends it inside the child, so the key is in LMDeploy's sys.argv but not in /proc/PID/cmdline."""
    fake = tmp_path / "fake" / "lmdeploy"  # stands in for LMDeploy's CLI: records what it was given
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import json, os, sys\n"
        "cmdline = open('/proc/self/cmdline', 'rb').read().decode()\n"
        "json.dump({'argv': sys.argv[1:], 'cmdline': cmdline}, open(os.environ['FAKE_OUT'], 'w'))\n")
    key, out = "sk-do-not-show-7f3a", tmp_path / "seen.json"
    cmd = lm.api_server_command(Path(sys.executable), lm.ApiServer("tuned", tiny_model, 23334, 0.5),
                                tmp_path / "t.json", api_key_env="KIT_TEST_SERVE_KEY")
    assert key not in " ".join(cmd)
    env = {**os.environ, "PYTHONPATH": str(fake.parent), "KIT_TEST_SERVE_KEY": key, "FAKE_OUT": str(out)}
    subprocess.run(cmd, env=env, check=True, timeout=60)
    seen = json.loads(out.read_text())
    assert seen["argv"][:3] == ["serve", "api_server", str(tiny_model)]
    assert seen["argv"][-2:] == ["--api-keys", key] and seen["argv"].count("--api-keys") == 1
    assert key not in seen["cmdline"] and "KIT_TEST_SERVE_KEY" in seen["cmdline"]
    empty = subprocess.run(cmd, env={**env, "KIT_TEST_SERVE_KEY": ""}, capture_output=True, text=True, timeout=60)
    assert empty.returncode != 0 and "$KIT_TEST_SERVE_KEY (for --api-keys) is empty" in empty.stderr


def test_lmdeploy_plan_two_servers(tiny_model, tuned_model, tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    monkeypatch.setenv("KIT_TEST_SERVE_KEY", "sk-secret-in-env")
    settings = ServeSettings(engine="lmdeploy", port=24000, character="bajie", api_key_env="KIT_TEST_SERVE_KEY",
                             backend="pytorch", kv="int4")
    plans = plan_servers({"base": tiny_model, "tuned": tuned_model}, settings, free_mib=20000,
                         python=Path("/lm/python"))
    assert [p.url for p in plans] == ["http://127.0.0.1:24000/v1", "http://127.0.0.1:24001/v1"]
    assert [p.names for p in plans] == [("base",), ("tuned",)]
    template = Path(plans[0].cmd[plans[0].cmd.index("--chat-template") + 1])
    assert json.loads(template.read_text())["meta_instruction"] == persona_for("bajie").system_prompt
    assert all(p.cmd[p.cmd.index("--quant-policy") + 1] == "4" for p in plans)
    assert all("sk-secret-in-env" not in " ".join(p.cmd) for p in plans)


def _merged_with_adapter(tmp_path: Path, base: Path, targets: list[str]) -> Path:
    """A merged-model folder whose kit_merge.json names its base and a PEFT adapter with these targets."""
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64, "target_modules": targets}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 2**20)
    shutil.copytree(base, merged)
    (merged / "kit_merge.json").write_text(json.dumps({"base": str(base), "adapter": str(adapter),
                                                       "character": "bajie"}))
    return merged


def _no_key_value(plans, key: str) -> bool:
    return all(key not in " ".join(p.cmd) and "--api-keys" not in p.cmd[p.cmd.index("lmdeploy"):] for p in plans)


def test_lmdeploy_plan_one_server_for_base_and_adapter(tiny_model, tmp_path, monkeypatch):
    """A merged model whose recorded adapter LMDeploy can load: one api_server, the base loaded once,
    `base` and `tuned` (the adapter) as its two model names, the whole budget for its KV cache."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    monkeypatch.setenv("KIT_TEST_SERVE_KEY", "sk-secret-in-env")
    merged = _merged_with_adapter(tmp_path, tiny_model, ["wqkv", "wo", "w1", "w2", "w3"])
    settings = ServeSettings(engine="lmdeploy", port=24000, character="bajie", api_key_env="KIT_TEST_SERVE_KEY",
                             gpu_fraction=0.3)
    (plan,) = plan_servers({"base": tiny_model, "tuned": merged}, settings, free_mib=20000, python=Path("/lm/python"))
    assert plan.names == ("base", "tuned") and plan.url == "http://127.0.0.1:24000/v1" and not plan.note
    cmd = plan.cmd
    assert cmd[cmd.index("api_server") + 1] == str(tiny_model) and str(merged) not in cmd
    assert cmd[cmd.index("--model-name") + 1] == "base"
    assert cmd[cmd.index("--adapters") + 1] == f"tuned={tmp_path / 'adapter'}"
    assert cmd[cmd.index("--adapters") + 2].startswith("--")  # nargs="*": the next flag ends the list
    assert cmd[cmd.index("--backend") + 1] == "pytorch"  # LoRA adapters run on the PyTorch engine only
    weights = lm.weight_mib(tiny_model) + 1.0  # the base once, plus the adapter
    assert float(cmd[cmd.index("--cache-max-entry-count") + 1]) == lm.cache_fractions(20000, [weights],
                                                                                        limit_mib=6000)[0]
    assert "--eager-mode" not in cmd and _no_key_value([plan], "sk-secret-in-env")
    eager = plan_servers({"base": tiny_model, "tuned": merged}, replace(settings, eager=True), free_mib=20000,
                         python=Path("/lm/python"))
    assert "--eager-mode" in eager[0].cmd


def test_lmdeploy_plan_two_servers_when_the_adapter_has_no_lmdeploy_slot(tiny_model, tmp_path, monkeypatch):
    """LoRA on the `output` head (XTuner's default) or the embeddings kills LMDeploy's engine: two servers,
    and a note that says why; --two-servers forces them for a servable adapter too."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    monkeypatch.setenv("KIT_TEST_SERVE_KEY", "sk-secret-in-env")
    merged = _merged_with_adapter(tmp_path, tiny_model, ["wqkv", "wo", "w1", "w2", "w3", "output"])
    settings = ServeSettings(engine="lmdeploy", port=24000, character="bajie", api_key_env="KIT_TEST_SERVE_KEY",
                             backend="pytorch")
    models = {"base": tiny_model, "tuned": merged}
    plans = plan_servers(models, settings, free_mib=20000, python=Path("/lm/python"))
    assert [p.names for p in plans] == [("base",), ("tuned",)] and all("--adapters" not in p.cmd for p in plans)
    assert plans[0].note == "" and "targets output" in plans[1].note and "LoRA slot" in plans[1].note
    assert plans[1].cmd[plans[1].cmd.index("api_server") + 1] == str(merged)
    assert _no_key_value(plans, "sk-secret-in-env")

    (tmp_path / "ok").mkdir()
    servable = _merged_with_adapter(tmp_path / "ok", tiny_model, ["wqkv", "wo"])
    forced = plan_servers({"base": tiny_model, "tuned": servable}, replace(settings, two_servers=True),
                          free_mib=20000, python=Path("/lm/python"))
    assert [p.names for p in forced] == [("base",), ("tuned",)] and not any(p.note for p in forced)
    assert _no_key_value(forced, "sk-secret-in-env")
    elsewhere = tmp_path / "other-base"
    shutil.copytree(tiny_model, elsewhere)  # the adapter was not trained on this base
    other = plan_servers({"base": elsewhere, "tuned": servable}, settings, free_mib=20000, python=Path("/lm/python"))
    assert len(other) == 2 and "not on the base served here" in other[1].note


def test_lora_blocker_and_the_model_cards_adapter_line():
    """The model cards print `lmdeploy serve … --adapters` only for an adapter LMDeploy can load."""
    from types import SimpleNamespace

    from kit.convert.card import _adapter_server_lines

    assert lm.lora_blocker(["wqkv", "wo", "w1", "w2", "w3"]) is None
    assert "tok_embeddings" in lm.lora_blocker(["wqkv", "tok_embeddings"])
    assert "output and tok_embeddings" in lm.lora_blocker(["output", "wqkv", "tok_embeddings"])
    run = SimpleNamespace(persona=SimpleNamespace(character="bajie"), lora={"target_modules": ["wqkv", "w2"]})
    (comment, command) = _adapter_server_lines(run, Path("/m/base"), Path("/m/adapter"))
    assert command.startswith("lmdeploy serve api_server /m/base --adapters bajie=/m/adapter --backend pytorch")
    run.lora["target_modules"] = ["wqkv", "output"]
    (comment,) = _adapter_server_lines(run, Path("/m/base"), Path("/m/adapter"))
    assert comment.startswith("# ") and "output" in comment


def test_transformers_plan_is_one_server_for_both(tiny_model, tuned_model):
    settings = ServeSettings(engine="transformers", host="0.0.0.0", port=9000, character="bajie",
                             api_key_env="MY_KEY")
    (plan,) = plan_servers({"base": tiny_model, "tuned": tuned_model}, settings)
    assert plan.names == ("base", "tuned") and plan.url == "http://127.0.0.1:9000/v1"
    assert plan.cmd[1:3] == [str(TETHER), "kit.serve.hf_server"]
    assert plan.cmd[plan.cmd.index("--api-key-env") + 1] == "MY_KEY"


def test_awq_driver_command_and_loader(tmp_path):
    cmd = driver_command(Path("/lm/python"), Path("m"), Path("o"), Path("c.json"), AwqSettings(32, 512, 1, 64))
    assert cmd[:4] == ["/lm/python", str(DRIVER), "m", "o"]
    assert cmd[cmd.index("--samples") + 1] == "32" and cmd[cmd.index("--group-size") + 1] == "64"
    # The driver must run under LMDeploy's interpreter, where kit is not importable.
    source = DRIVER.read_text()
    assert "import kit" not in source and "from kit" not in source
    from transformers import AutoTokenizer

    from kit.tiny import build_tiny_model

    tok = AutoTokenizer.from_pretrained(build_tiny_model())
    loader, stats = local_loader(["俺老猪饿了。" * 300, "猴哥救命！" * 300])
    samples = loader("wikitext2", tok, nsamples=4, seqlen=64)
    assert len(samples) == 4 and all(s.shape == (1, 64) for s in samples)
    short = local_loader(["你好"])[0]("wikitext2", tok, nsamples=4, seqlen=64)
    assert len(short) == 1 and short[0].shape[1] < 64


def test_calibration_texts_come_from_the_character(tmp_path, tiny_model):
    from kit.serve.calibration import calibration_texts

    texts, source = calibration_texts("bajie", tmp_path / "merged")
    assert "datasets/bajie" in source and any("八戒" in t for t in texts)
    (tmp_path / "data").mkdir()
    row = {"messages": [{"role": "user", "content": "你是谁"}, {"role": "assistant", "content": "俺老猪"}]}
    (tmp_path / "data" / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n")
    texts, source = calibration_texts("bajie", tmp_path / "merged")
    assert texts == ["<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n俺老猪<|im_end|>\n"]
    (tmp_path / "bad.jsonl").write_text('{"messages": []}\nnot json\n')
    with pytest.raises(KitError, match="bad.jsonl:2"):
        calibration_texts("bajie", tmp_path / "merged", tmp_path / "bad.jsonl")


def test_quantize_on_cpu_says_lmdeploy_needs_a_gpu(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_kit("quantize", str(tiny_model), "--w4a16", "--kv", "int8", env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2
    assert "LMDeploy needs a GPU" in result.stderr and "--engine transformers" in result.stderr
    bad = run_kit("quantize", str(tiny_model), "--kv", "int3")
    assert bad.returncode == 2 and "int8, int4" in bad.stderr
    missing = run_kit("quantize", "/nonexistent/model", "--w4a16")
    assert missing.returncode == 2 and "model /nonexistent/model: not a Hugging Face model folder" in missing.stderr
    assert "--tuned" not in missing.stderr  # quantize takes the model as an argument, not --tuned
    serve = run_kit("serve", "--engine", "lmdeploy", "--base", str(tiny_model), "--no-ui")
    assert serve.returncode == 2 and "LMDeploy needs a GPU" in serve.stderr


def test_driver_script_parses_its_arguments():
    out = subprocess.run([sys.executable, str(DRIVER), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--calib" in out.stdout


def _fake_nvidia_smi(folder: Path, body: str) -> str:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_gpu_memory_comes_from_nvidia_smi_for_the_first_visible_device(tmp_path, monkeypatch):
    # the fake answers for the device asked with -i, so the test sees which one kit asked about
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, 'echo "$((1000 + $2 * 10000)), 143771"'))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert lm.nvidia_smi_memory_mib() == (1000.0, 143771.0)  # -i 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert lm.gpu_memory_mib() == (31000.0, 143771.0)  # -i 3: CUDA's device 0


@pytest.mark.parametrize("visible, body", [("GPU-8f3c", 'echo "1, 2"'),  # devices named by UUID
                                           (None, "exit 9"),  # a failing nvidia-smi
                                           (None, 'echo "No devices were found"')])
def test_nvidia_smi_that_cannot_say_leaves_it_to_torch(tmp_path, monkeypatch, visible, body):
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, body))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert lm.nvidia_smi_memory_mib() is None
