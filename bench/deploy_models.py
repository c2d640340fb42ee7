"""A LoRA adapter and its merged model for a base, without training, for the GPU deploy bench.

  python bench/deploy_models.py BASE OUT [--character bajie]
OUT/adapter: a PEFT LoRA adapter (r=64, alpha=16 on wqkv, wo, w1, w2, w3: recipes/bajie.py's GPU
targets) with random A *and* B, so that it changes the model (PEFT's own init zeroes B: a no-op).
OUT/merged: BASE with the adapter merged in, and a kit_merge.json naming base, adapter and character,
as `kit merge` writes it, so `kit serve` serves base + adapter in one server and `kit eval` knows the
persona. Written straight to safetensors under InternLM2's names (no modeling code, no peft needed);
the merge is PEFT's arithmetic (it keeps LoRA weights in fp32: W + B @ A * alpha / r in fp32, rounded
once to the weights' dtype), so `PeftModel(...).merge_and_unload()` gives the same weights bit for bit
(--check; checked on CPU with the tiny model in fp32 and in bf16).
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TARGETS = ["wqkv", "wo", "w1", "w2", "w3"]
R, ALPHA = 64, 16


def lora_pairs(base: dict, r: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{base weight name: (A, B)} for every target linear, in the weights' dtype."""
    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for name, w in base.items():
        if name.endswith(".weight") and name.split(".")[-2] in TARGETS:
            out_dim, in_dim = w.shape
            a = torch.randn(r, in_dim, generator=gen) / in_dim**0.5  # PEFT's kaiming-uniform scale
            b = torch.randn(out_dim, r, generator=gen) * 0.02  # PEFT starts B at 0; here it is not
            pairs[name] = (a.to(w.dtype), b.to(w.dtype))
    return pairs


def write_adapter(out: Path, base_path: Path, pairs: dict, r: int, alpha: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b) in pairs.items():
        stem = "base_model.model." + name.removesuffix(".weight")
        tensors[f"{stem}.lora_A.weight"], tensors[f"{stem}.lora_B.weight"] = a.contiguous(), b.contiguous()
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_path),
              "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": TARGETS, "bias": "none",
              "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
              "modules_to_save": None, "use_rslora": False, "use_dora": False}
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))


def write_merged(out: Path, base_path: Path, base: dict, pairs: dict, scale: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in base_path.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and not f.name.startswith("kit_"):
            shutil.copy(f, out / f.name)
    merged = dict(base)
    for name, (a, b) in pairs.items():
        w = base[name]
        merged[name] = (w.float() + (b.float() @ a.float()) * scale).to(w.dtype)
    save_file(merged, out / "model.safetensors", metadata={"format": "pt"})


def check_against_peft(base_path: Path, adapter: Path, merged: Path) -> float:
    """Largest |PEFT merge_and_unload - our merged| over all weights (0.0: bit for bit)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = json.loads((base_path / "config.json").read_text()).get("torch_dtype", "float32")
    model = AutoModelForCausalLM.from_pretrained(base_path, trust_remote_code=True, torch_dtype=getattr(torch, dtype))
    theirs = PeftModel.from_pretrained(model, adapter).merge_and_unload().state_dict()
    ours = load_file(merged / "model.safetensors")
    return max((theirs[k].float() - v.float()).abs().max().item() for k, v in ours.items())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("base", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--character", default="bajie")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true", help="compare with PEFT's merge_and_unload (needs peft)")
    a = p.parse_args()
    base_path, adapter, merged = a.base.resolve(), (a.out / "adapter").resolve(), (a.out / "merged").resolve()
    base = load_file(base_path / "model.safetensors")
    pairs = lora_pairs(base, R, a.seed)
    write_adapter(adapter, base_path, pairs, R, ALPHA)
    (adapter / "kit_adapter.json").write_text(json.dumps({"base": str(base_path), "character": a.character}))
    write_merged(merged, base_path, base, pairs, ALPHA / R)
    record = {"base": str(base_path), "adapter": str(adapter), "character": a.character, "dtype": "bfloat16",
              "lora": {"r": R, "lora_alpha": ALPHA, "lora_dropout": 0.0, "target_modules": TARGETS, "bias": "none"},
              "note": "bench/deploy_models.py: random LoRA (no training), merged by PEFT's arithmetic"}
    (merged / "kit_merge.json").write_text(json.dumps(record, indent=2))
    params = sum(x.numel() for ab in pairs.values() for x in ab)
    print(f"{adapter}: {len(pairs)} LoRA pairs, {params / 1e6:.1f}M parameters; {merged}: merged")
    if a.check:
        print(f"max |PEFT merge - ours| = {check_against_peft(base_path, adapter, merged):.3g}")


if __name__ == "__main__":
    main()
