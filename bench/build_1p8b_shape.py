"""Build an InternLM2-Chat-1.8B-shaped model with random weights (no hub needed).

Same architecture code as the tiny model (XTuner's shipped modeling_internlm2.py) and the real
model's sizes; the tokenizer is the tiny one (its ids all fall inside the 92,544-row embedding),
which is all a throughput or memory measurement needs.

    python bench/build_1p8b_shape.py OUT_DIR        # builds on CUDA when there is one
"""

import json
import shutil
import sys
from pathlib import Path

# internlm2-chat-1_8b's config.json, sizes only.
SHAPE_1P8B = dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
                  intermediate_size=8192, vocab_size=92544, max_position_embeddings=32768,
                  rope_theta=1000000, rope_scaling={"type": "dynamic", "factor": 2.0})


def build_1p8b_shape(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from kit.tiny import build_tiny_model

    out = Path(out)
    if (out / "model.safetensors.index.json").exists() or (out / "model.safetensors").exists():
        return out
    tiny = build_tiny_model()
    out.mkdir(parents=True, exist_ok=True)
    for f in tiny.iterdir():
        if f.name not in {"model.safetensors", "generation_config.json"}:
            shutil.copy(f, out / f.name)
    config = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    config.update(SHAPE_1P8B, torch_dtype="bfloat16")
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    cfg = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True, torch_dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    print(build_1p8b_shape(Path(sys.argv[1])))
