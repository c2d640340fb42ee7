"""XTuner checkpoint (.pth) -> Hugging Face PEFT adapter folder: XTuner's pth_to_hf path, in process.

Same steps as `xtuner convert pth_to_hf` (build the recipe's model on the meta device, load the
checkpoint's tensors into it, `model.to_hf`), with three differences that make it work everywhere:
the 4-bit quantization config is dropped (a LoRA adapter does not depend on it, and bitsandbytes
needs CUDA), the base is the one the user names (a run may have trained on another path), and the
adapter stays fp32 (XTuner would halve it). Every failure becomes a KitError naming the file.
"""

import json
import logging
from pathlib import Path

from kit.errors import KitError

# Fields of config.json that must agree between the base trained on and the base merged into.
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size", "vocab_size")
SAMPLED_TENSORS = 8  # how many tensors weights_differ compares


def load_config(config_path: Path):
    from mmengine.config import Config

    try:
        return Config.fromfile(str(config_path))
    except Exception as e:  # a syntax error, a missing import: anything mmengine raises
        raise KitError(f"{config_path}: cannot read the XTuner config ({type(e).__name__}: {e})",
                       "fix the file, or copy the recipe you trained with into the work dir") from e


def _set_base(node, base: str) -> None:
    """Point every `pretrained_model_name_or_path` in the model/tokenizer config at `base`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pretrained_model_name_or_path":
                node[key] = base
            else:
                _set_base(value, base)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _set_base(value, base)


def _shape(path: Path) -> dict:
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    return {k: config.get(k) for k in SHAPE_FIELDS}


def trained_base(trained_on: str) -> Path | None:
    """The base a run trained on as a folder on this machine: its path, or a hub id in the HF cache."""
    if not trained_on:
        return None
    if (Path(trained_on) / "config.json").is_file():
        return Path(trained_on)
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(trained_on, local_files_only=True))
    except Exception:  # not a hub id, or never downloaded here (huggingface_hub raises several kinds)
        return None
    return cached if (cached / "config.json").is_file() else None


def check_base_matches(trained_on: str, base: Path) -> None:
    """If the base of the run is still on disk and differs from `base`, their shapes must agree."""
    folder = trained_base(trained_on)
    if folder is None or folder.resolve() == base.resolve():
        return
    old, new = _shape(folder), _shape(base)
    diff = [f"{k}: {old[k]} vs {new[k]}" for k in SHAPE_FIELDS if old[k] != new[k]]
    if diff:
        raise KitError(f"base {base} does not match the model the run trained on ({trained_on}): "
                       + "; ".join(diff), "merge into the same base model the run trained on (--base)")


def _tensor_files(folder: Path) -> dict[str, Path]:
    from safetensors import safe_open

    files = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            files.update(dict.fromkeys(f.keys(), path))
    return files


def _middle_row(path: Path, name: str):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensor = f.get_slice(name)
        rows = tensor.get_shape()[0] if tensor.get_shape() else 0
        return tensor[rows // 2:rows // 2 + 1] if rows else f.get_tensor(name)


def weights_differ(trained_on: Path, base: Path) -> str | None:
    """The first of a few sampled tensors whose values differ between two models of one shape, None
    if they all agree (and None when either has no safetensors: nothing to compare cheaply).

    One row of SAMPLED_TENSORS tensors spread over the model, read without loading it: fine-tuning
    moves every weight, so this tells a chat model from its pretrained base for a few KiB of reads.
    """
    old, new = _tensor_files(trained_on), _tensor_files(base)
    names = sorted(old.keys() & new.keys())
    for name in names[::max(1, -(-len(names) // SAMPLED_TENSORS))]:
        a, b = _middle_row(old[name], name), _middle_row(new[name], name)
        narrow = a.dtype if a.element_size() <= b.element_size() else b.dtype  # a bf16 base saved as fp32
        if a.shape != b.shape or not a.to(narrow).equal(b.to(narrow)):
            return name
    return None


def load_checkpoint(checkpoint: Path) -> dict:
    from xtuner.model.utils import guess_load_checkpoint

    try:
        state = guess_load_checkpoint(str(checkpoint))
    except Exception as e:  # truncated zip, garbage bytes, a folder that is no DeepSpeed checkpoint
        raise KitError(f"checkpoint {checkpoint} is unreadable or corrupt ({type(e).__name__}: {e})",
                       "pick another checkpoint with --checkpoint, or re-run training to save it again") from e
    if not isinstance(state, dict) or not any("lora_" in k for k in state):
        raise KitError(f"checkpoint {checkpoint} holds no LoRA weights",
                       "kit merge converts LoRA/QLoRA runs; for a full fine-tune use "
                       "`xtuner convert pth_to_hf CONFIG CKPT OUT` (it writes a whole model)")
    return state


def export_adapter(config_path: Path, checkpoint: Path, base: Path, out: Path) -> dict:
    """Write the PEFT adapter of `checkpoint` to `out`; return its adapter_config as a dict."""
    import warnings

    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from mmengine.logging import MMLogger
    from xtuner.registry import BUILDER

    import kit.train.xtuner_compat  # noqa: F401  (torch.cpu.is_bf16_supported shim, for CPU hosts)

    cfg = load_config(config_path)
    state = load_checkpoint(checkpoint)
    check_base_matches(cfg.model.llm.get("pretrained_model_name_or_path", ""), base)
    _set_base(cfg.model, str(base))
    _set_base(cfg.get("tokenizer"), str(base))
    cfg.model.llm.pop("quantization_config", None)
    cfg.model.pop("peft_model", None)  # an adapter to resume from: the checkpoint already has it
    try:
        with init_empty_weights(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-meta.*")
            model = BUILDER.build(cfg.model)
    except Exception as e:
        raise KitError(f"cannot build the model of {config_path} on base {base} "
                       f"({type(e).__name__}: {e})",
                       "check --base: it must be a Hugging Face model folder (config.json, "
                       "tokenizer, remote code)") from e
    params = dict(model.named_parameters())
    for name, tensor in state.items():
        if name not in params:
            raise KitError(f"checkpoint {checkpoint} has {name}, which base {base} lacks",
                           "merge into the base model the run trained on (--base)")
        if params[name].shape != tensor.shape:
            raise KitError(f"checkpoint {checkpoint}: {name} is {tuple(tensor.shape)} but base {base} "
                           f"needs {tuple(params[name].shape)} (a different hidden size or vocabulary)",
                           "merge into the base model the run trained on (--base)")
        set_module_tensor_to_device(model, name, "cpu", tensor)
    missing = [n for n, p in model.named_parameters() if "lora_" in n and p.is_meta]
    if missing:
        raise KitError(f"checkpoint {checkpoint} lacks {len(missing)} LoRA tensors, e.g. {missing[0]}",
                       "the recipe's `lora` settings differ from the ones trained with: use the "
                       "config from the same work dir")
    # XTuner logs "Saving adapter to" the staging folder (.adapter.partial-HOST-PID-…); kit names where
    # the adapter lands once it is there
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.to_hf(cfg=cfg, save_dir=str(out), fp32=True, save_pretrained_kwargs={"safe_serialization": True})
    finally:
        logger.setLevel(level)
    return json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
