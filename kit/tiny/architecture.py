"""The tiny InternLM2's architecture: XTuner's own modeling code, InternLM2-Chat-1.8B's config keys,
small sizes.

The modeling files are copied from the installed XTuner (xtuner/_lite/modelings/internlm2), so the
tiny model runs the same remote code as InternLM2-Chat-1.8B and loads the same way:
`AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.
"""

import json
import shutil
from pathlib import Path

from kit import chat_format

# Sizes chosen by measurement on a 2-core CPU (docs/tiny-model.md): large enough to learn the
# assistant corpus and then a persona, small enough to pretrain in about two minutes. GQA (6 query
# heads over 2 key/value heads) and RoPE are exercised as in the 1.8B model.
TINY_SHAPE = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=344, max_position_embeddings=2048)
MODELING_FILES = ("configuration_internlm2.py", "modeling_internlm2.py")


def _modeling_dir() -> Path:
    import xtuner

    return Path(xtuner.__file__).parent / "_lite" / "modelings" / "internlm2"


def copy_modeling_code(out: Path) -> None:
    for name in MODELING_FILES:
        shutil.copy(_modeling_dir() / name, Path(out) / name)


def write_config(out: Path, vocab_size: int) -> None:
    config = {
        "architectures": ["InternLM2ForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "model_type": "internlm2",
        "vocab_size": vocab_size,
        "bias": False,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "rope_theta": 1000000,
        # InternLM2-Chat-1.8B ships dynamic NTK scaling; a null here also breaks LMDeploy 0.18's engine.
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "attn_implementation": "eager",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        **TINY_SHAPE,
    }
    (Path(out) / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def new_model(folder: Path, seed: int):
    """A randomly initialised model for the config.json and modeling code in `folder`, with SDPA
    attention (15 % faster to train on CPU than the eager attention the saved config names)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    config.attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, trust_remote_code=True, torch_dtype=torch.float32)


def save_model(model, out: Path) -> None:
    """Save weights and configs (beside the tokenizer already written to `out`) so that equal weights
    give byte-identical folders."""
    from transformers import AutoTokenizer

    model.config.attn_implementation = "eager"  # what XTuner's CPU path and the 1.8B config use
    # </s> and <|im_end|>: InternLM2-Chat stops on both.
    model.generation_config.eos_token_id = chat_format.stop_ids(AutoTokenizer.from_pretrained(out),
                                                                model.generation_config)
    model.generation_config.pad_token_id = 2
    model.save_pretrained(out, safe_serialization=True)
    # save_pretrained records the (temporary) build folder; drop it so builds are byte-identical.
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    saved.pop("_name_or_path", None)
    (out / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
    copy_modeling_code(out)  # save_pretrained may not keep the remote-code files: copy them again
