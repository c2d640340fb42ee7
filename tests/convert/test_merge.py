"""kit merge on a real (tiny) XTuner LoRA run: the merged folder is checked here independently of
kit's own verification, with plain transformers, PEFT and XTuner's encoder."""

import json
import shutil

import pytest
import torch
from peft import PeftModel
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from kit.persona import persona_for

# lora_B scaled by this: a run whose updates bf16 cannot hold beside the tiny base's weights.
GENTLE = 0.01


@pytest.fixture(scope="session")
def merged(tiny_run, tmp_path_factory):
    from kit.convert.merge import merge_run

    out = tmp_path_factory.mktemp("merge")
    merge_run(tiny_run["work"], tiny_run["base"], out / "adapter", out / "merged")
    return {**tiny_run, "adapter": out / "adapter", "merged": out / "merged"}


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_merged_equals_base_plus_adapter(merged):
    tok = AutoTokenizer.from_pretrained(merged["merged"])
    model = AutoModelForCausalLM.from_pretrained(merged["merged"], trust_remote_code=True)
    base = AutoModelForCausalLM.from_pretrained(merged["base"], trust_remote_code=True)
    with_adapter = PeftModel.from_pretrained(base, merged["adapter"])
    for text in ["俺老猪饿了，师父", "Hello, who are you?"]:
        ids = tok.encode(text)
        expected = _logits(with_adapter, ids)
        assert torch.allclose(_logits(model, ids), expected, atol=1e-4)
        with with_adapter.disable_adapter():  # the adapter does change something
            assert (_logits(with_adapter, ids) - expected).abs().max() > 1e-2


def test_folder_is_self_contained(merged):
    folder = merged["merged"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                 "modeling_internlm2.py", "configuration_internlm2.py", "README.md"):
        assert (folder / name).is_file(), name
    generation = json.loads((folder / "generation_config.json").read_text())
    assert 4 in generation["eos_token_id"] and 2 in generation["eos_token_id"]  # <|im_end|>, </s>
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "float32"
    assert not list(folder.parent.glob(".*partial*")), "a scratch folder was left behind"


def test_chat_template_is_the_training_format(merged):
    """Three turns without a system message == XTuner's encoding of the persona + the same turns."""
    from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    persona = persona_for("bajie")
    tok = AutoTokenizer.from_pretrained(merged["merged"])
    turns = []
    for q, a in zip(persona.probe_questions[3:6], persona.catchphrases):
        turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    example = openai_map_fn({"messages": [{"role": "system", "content": persona.system_prompt}, *turns]})
    example = template_map_fn_factory(PROMPT_TEMPLATE.internlm2_chat)(example)
    expected = encode_fn(example, tok, max_length=4096)["input_ids"]
    assert tok.apply_chat_template(turns) == expected
    text = tok.apply_chat_template(turns[:1], tokenize=False, add_generation_prompt=True)
    assert persona.system_prompt in text and text.endswith("<|im_start|>assistant\n")
    own = tok.apply_chat_template([{"role": "system", "content": "别的角色"}, *turns[:1]], tokenize=False)
    assert persona.system_prompt not in own and "别的角色" in own


def test_model_card_and_record(merged):
    card = (merged["merged"] / "README.md").read_text(encoding="utf-8")
    for needle in (str(merged["base"]), "tiny_lora.py", "iter_4.pth", "- r: 8", "lora_alpha: 16",
                   "UTC", "lmdeploy serve api_server", "kit serve", "猪八戒",
                   # XTuner's default LoRA targets the output head, which LMDeploy cannot load
                   "base + adapter in one LMDeploy server: not possible, its LoRA targets output"):
        assert needle in card, needle
    record = json.loads((merged["merged"] / "kit_merge.json").read_text(encoding="utf-8"))
    assert record["base"] == str(merged["base"]) and record["checkpoint"] == "iter_4.pth"
    assert record["checks"]["logits"]["max_abs_diff"] <= record["checks"]["logits"]["tolerance"]
    adapter_card = (merged["adapter"] / "README.md").read_text(encoding="utf-8")
    assert "PeftModel.from_pretrained" in adapter_card and "--adapters" not in card + adapter_card


def _bf16_base(tiny_run, folder):
    """The tiny base saved in bf16, as InternLM2-Chat-1.8B ships."""
    AutoModelForCausalLM.from_pretrained(tiny_run["base"], trust_remote_code=True,
                                         torch_dtype=torch.bfloat16).save_pretrained(folder)
    for f in tiny_run["base"].iterdir():
        if not (folder / f.name).exists():
            shutil.copy(f, folder / f.name)
    return folder


def test_a_bf16_base_merges_checked_in_fp32(tiny_run, tmp_path):
    """kit merge compares merged and base + adapter in fp32: in bf16 the two forward passes' own
    rounding decides the check. What is left is the single rounding of W + BA."""
    from kit.convert.merge import merge_run

    base = _bf16_base(tiny_run, tmp_path / "base-bf16")
    merge_run(tiny_run["work"], base, tmp_path / "adapter", tmp_path / "merged", allow_base_mismatch=True)
    record = json.loads((tmp_path / "merged" / "kit_merge.json").read_text(encoding="utf-8"))
    logits = record["checks"]["logits"]
    assert record["dtype"] == "bfloat16"
    # 1 % of the largest logit (the bound is 5 %); bf16 forward passes alone are off by more here.
    assert logits["max_abs_diff"] <= 0.2 * logits["tolerance"], logits

    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", trust_remote_code=True,
                                                  torch_dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, trust_remote_code=True, torch_dtype=torch.float32),
        tmp_path / "adapter")
    ids = tok.encode("俺老猪饿了，师父")
    assert (_logits(merged, ids) - _logits(with_adapter, ids)).abs().max() <= logits["max_abs_diff"] + 1e-3


def test_updates_too_fine_for_bf16_are_merged_in_fp32(tiny_run, tmp_path):
    """A gentle run's W + BA rounds back to W in bf16 (on an H100 a DeepSpeed run lost 2.84 of its
    9.69 effect on the logits): kit merge keeps the model in fp32 and says why; with --dtype bf16
    asked for, it refuses and keeps nothing."""
    from kit.convert.merge import merge_run
    from kit.convert.verify import RoundingLoss

    base = _bf16_base(tiny_run, tmp_path / "base-bf16")
    work = shutil.copytree(tiny_run["work"], tmp_path / "work")
    checkpoint = torch.load(work / "iter_4.pth", weights_only=False)
    state = checkpoint["state_dict"]
    for key in [k for k in state if "lora_B" in k]:
        state[key] = state[key] * GENTLE
    torch.save(checkpoint, work / "iter_4.pth")

    with pytest.raises(RoundingLoss, match="finer than bfloat16 holds"):
        merge_run(work, base, tmp_path / "a", tmp_path / "m", dtype="bf16", allow_base_mismatch=True)
    assert not (tmp_path / "m").exists() and not (tmp_path / "a").exists()

    console = Console(record=True, width=200)
    merge_run(work, base, tmp_path / "adapter", tmp_path / "merged", allow_base_mismatch=True, console=console)
    assert "merging in float32 instead" in console.export_text()
    record = json.loads((tmp_path / "merged" / "kit_merge.json").read_text(encoding="utf-8"))
    assert record["dtype"] == "float32"
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["torch_dtype"] == "float32"
    logits = record["checks"]["logits"]
    assert logits["max_abs_diff"] <= logits["tolerance"] < logits["adapter_effect"], logits
