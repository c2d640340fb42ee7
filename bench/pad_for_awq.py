"""The trained demo (base, adapter, merged) made W4A16-quantizable, for the GPU deploy bench's drift run.

  python bench/pad_for_awq.py DEMO OUT [--dtype bfloat16]
AWQ quantizes each linear layer in groups of 128 input channels; the tiny InternLM2's feed-forward width
(344) is not a multiple of 128, so `kit quantize --w4a16` cannot take it. This widens it to 384 with 40
extra channels that leave the model's function all but unchanged:
  w1 and w3 get 40 new output rows (random, at the layer's own scale), so the extra channels carry
  ordinary activations (AWQ divides by each channel's activation and weight scale: zeros would make
  NaNs), and w2 gets 40 new input columns at 1/1000 of its scale, so what they add is negligible.
The adapter's LoRA pairs are widened with zeros (w1/w3 lora_B rows, w2 lora_A columns), so OUT/merged
equals OUT/base with OUT/adapter merged in, as `kit merge` would write it, and the whole chain
(adapter -> merged -> W4A16 -> KV int8) is one trained model, in the 1.8B model's dtype (bfloat16).
OUT/*/kit_*.json point at OUT's folders; the rest, data/ included, is copied from DEMO (`kit demo`'s folder).
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WIDTH = 384  # 3 groups of 128
W2_SCALE = 1e-3


def widen_base(tensors: dict, extra: int, gen: torch.Generator) -> dict:
    out = {}
    for name, w in tensors.items():
        kind = name.split(".")[-2]
        if kind in ("w1", "w3"):  # [inter, hidden]: new output rows
            w = torch.cat([w, torch.randn(extra, w.shape[1], generator=gen) * w.std()])
        elif kind == "w2":  # [hidden, inter]: new input columns, near zero
            w = torch.cat([w, torch.randn(w.shape[0], extra, generator=gen) * w.std() * W2_SCALE], dim=1)
        out[name] = w
    return out


def widen_adapter(tensors: dict, extra: int) -> dict:
    out = {}
    for name, w in tensors.items():
        if any(f".{k}.lora_B." in name for k in ("w1", "w3")):
            w = torch.cat([w, w.new_zeros(extra, w.shape[1])])
        elif ".w2.lora_A." in name:
            w = torch.cat([w, w.new_zeros(w.shape[0], extra)], dim=1)
        out[name] = w
    return out


def merge(base: dict, adapter: dict, scale: float) -> dict:
    """PEFT's merge: W + B @ A * alpha / r for linear layers; embeddings get (A^T B^T)."""
    merged = dict(base)
    for name, a in adapter.items():
        if name.endswith("lora_A.weight"):
            stem = name.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
            b = adapter[name.replace("lora_A", "lora_B")]
            merged[stem + ".weight"] = base[stem + ".weight"] + (b @ a) * scale
        elif name.endswith("lora_embedding_A"):
            stem = name.removesuffix(".lora_embedding_A").removeprefix("base_model.model.")
            b = adapter[name.replace("lora_embedding_A", "lora_embedding_B")]
            merged[stem + ".weight"] = base[stem + ".weight"] + (b @ a).T * scale
    return merged


def copy_folder(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("demo", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    demo, out = a.demo.resolve(), a.out.resolve()
    dtype = getattr(torch, a.dtype)
    base = load_file(demo / "base" / "model.safetensors")
    extra = WIDTH - base["model.layers.0.feed_forward.w1.weight"].shape[0]
    base = widen_base(base, extra, torch.Generator().manual_seed(a.seed))
    adapter = widen_adapter(load_file(demo / "adapter" / "adapter_model.safetensors"), extra)
    lora = json.loads((demo / "adapter" / "adapter_config.json").read_text())
    merged = merge(base, adapter, lora["lora_alpha"] / lora["r"])

    for name in ("base", "adapter", "merged"):
        copy_folder(demo / name, out / name)
    shutil.copytree(demo / "data", out / "data", dirs_exist_ok=True)  # eval.jsonl; train.jsonl calibrates AWQ
    for name, tensors in (("base", base), ("merged", merged)):
        save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, out / name / "model.safetensors",
                  metadata={"format": "pt"})
        config = json.loads((out / name / "config.json").read_text())
        config.update(intermediate_size=WIDTH, torch_dtype=a.dtype)
        (out / name / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file({k: v.contiguous() for k, v in adapter.items()}, out / "adapter" / "adapter_model.safetensors",
              metadata={"format": "pt"})
    # every record points at OUT's folders
    for record in (out / "adapter" / "adapter_config.json", out / "adapter" / "kit_adapter.json",
                   out / "merged" / "kit_merge.json"):
        text = record.read_text()
        for name in ("base", "adapter", "merged", "work"):
            text = text.replace(str(demo / name), str(out / name))
        record.write_text(text)
    merge_record = json.loads((out / "merged" / "kit_merge.json").read_text())
    merge_record.update(dtype=a.dtype, note=f"bench/pad_for_awq.py: {demo}'s models, feed-forward widened to {WIDTH}")
    (out / "merged" / "kit_merge.json").write_text(json.dumps(merge_record, indent=2, ensure_ascii=False))
    print(f"{out}: base, adapter, merged with intermediate_size {WIDTH} ({extra} channels added), {a.dtype}")


if __name__ == "__main__":
    main()
