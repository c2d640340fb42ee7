"""An InternLM2-Chat-1.8B-shaped model with random weights, for LMDeploy serve/quantize checks on a GPU.

  python bench/serve_build_model.py TEMPLATE OUT
TEMPLATE is a tiny InternLM2 from kit.tiny (tokenizer, chat template, remote code); OUT gets the real
1.8B shape (hidden 2048, 24 layers, 16 heads, 8 KV heads, FFN 8192, vocab 92544, dynamic RoPE x2) in
bf16. Weights are written straight to safetensors under InternLM2's names, so no modeling code runs.
Ids past the small tokenizer's vocabulary decode to nothing (LMDeploy drops them).
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

SHAPE = dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
             intermediate_size=8192, vocab_size=92544, max_position_embeddings=32768)


def main(template: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in template.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, out / f.name)
    config = json.loads((template / "config.json").read_text())
    config.update(SHAPE, torch_dtype="bfloat16", rope_scaling={"type": "dynamic", "factor": 2.0})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    h, heads, kv = SHAPE["hidden_size"], SHAPE["num_attention_heads"], SHAPE["num_key_value_heads"]
    d, ffn, vocab = h // heads, SHAPE["intermediate_size"], SHAPE["vocab_size"]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(dev).manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, device=dev) * 0.02).to(torch.bfloat16).cpu()

    ones = lambda n: torch.ones(n, dtype=torch.bfloat16)  # noqa: E731
    w = {"model.tok_embeddings.weight": rand(vocab, h), "model.norm.weight": ones(h), "output.weight": rand(vocab, h)}
    for i in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w |= {p + "attention.wqkv.weight": rand((heads + 2 * kv) * d, h), p + "attention.wo.weight": rand(h, h),
              p + "feed_forward.w1.weight": rand(ffn, h), p + "feed_forward.w3.weight": rand(ffn, h),
              p + "feed_forward.w2.weight": rand(h, ffn), p + "attention_norm.weight": ones(h),
              p + "ffn_norm.weight": ones(h)}
    save_file(w, out / "model.safetensors", metadata={"format": "pt"})
    print(f"{out}: {sum(t.numel() for t in w.values()) / 1e9:.2f}B parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
