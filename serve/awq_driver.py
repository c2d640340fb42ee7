"""LMDeploy AWQ W4A16 with our own calibration text. Runs under LMDeploy's interpreter, not kit's.

`lmdeploy lite auto_awq` only knows hub datasets (wikitext2, c4, ...), which fail offline. Its
calibrate() looks up get_calib_loaders in its own module at call time, so replacing that one name
feeds it the character's text and leaves the rest of LMDeploy's AWQ untouched.

  python awq_driver.py MODEL OUT --calib texts.json [--samples N --seqlen L --batch-size B --group-size G]
Writes the quantized model to OUT and a JSON summary (time, peak GPU memory, tokens) to OUT/kit_awq.json.

transformers 5 builds remote-code models on the meta device and then allocates, without initialising,
every buffer that is not in the checkpoint. InternLM2's RoPE frequencies (`inv_freq`, a non-persistent
buffer computed in __init__) therefore hold whatever was in memory: garbage RoPE on the CPU, NaN/inf on
a GPU, where LMDeploy's calibration then asserts on NaN activations. `restore_rope_buffers` recomputes
them after loading (see tests/serve/test_awq_driver.py).
"""

import argparse
import json
import time
from pathlib import Path


def local_loader(texts: list[str]):
    def get_calib_loaders(name, tokenizer, nsamples=128, seed=0, seqlen=2048):
        ids = tokenizer("\n\n".join(texts), return_tensors="pt").input_ids
        seqlen = min(seqlen, ids.shape[1])  # a small character corpus may be shorter than one sample
        n = max(1, min(nsamples, ids.shape[1] // seqlen))
        stats["calib_samples"], stats["calib_seqlen"], stats["calib_tokens"] = n, seqlen, int(ids.shape[1])
        return [ids[:, i * seqlen:(i + 1) * seqlen] for i in range(n)]

    stats: dict = {}
    return get_calib_loaders, stats


def restore_rope_buffers(model) -> int:
    """Recompute the RoPE buffers of remote-code rotary embeddings (InternLM2's: `dim`, `base`,
    non-persistent `inv_freq`, in older versions also `cos_cached`/`sin_cached`) exactly as their
    __init__ does. transformers 4.x computed them at construction; transformers 5 leaves them
    uninitialised. Returns how many modules were fixed; transformers' own rotary classes (no `dim`/`base`)
    are initialised by transformers and left alone."""
    import torch

    fixed = 0
    for module in model.modules():
        inv_freq = module._buffers.get("inv_freq")
        dim, base = getattr(module, "dim", None), getattr(module, "base", None)
        if inv_freq is None or not isinstance(dim, int) or isinstance(base, bool) \
                or not isinstance(base, (int, float)):
            continue
        fresh = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        device = inv_freq.device if inv_freq.device.type != "meta" else None
        module._buffers["inv_freq"] = fresh.to(device=device, dtype=inv_freq.dtype)
        cached = module._buffers.get("cos_cached")
        if cached is not None and hasattr(module, "_set_cos_sin_cache"):
            module._set_cos_sin_cache(seq_len=getattr(module, "max_seq_len_cached", dim), device=device,
                                      dtype=cached.dtype)
        fixed += 1
    return fixed


def fix_loaded_model(load):
    """Wrap LMDeploy's model loader with the transformers-5 fixes for InternLM2's 4.x-era remote code."""
    def wrapped(*args, **kwargs):
        model = load(*args, **kwargs)
        # transformers 5 wants `_tied_weights_keys` as a dict and save_pretrained fails on the list that
        # the remote code declares. Our models tie nothing: give it an empty dict.
        if isinstance(getattr(model, "_tied_weights_keys", None), list) and \
                not getattr(model.config, "tie_word_embeddings", False):
            model._tied_weights_keys = {}
        print(f"kit: recomputed RoPE frequencies in {restore_rope_buffers(model)} rotary embeddings", flush=True)
        return model
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--calib", required=True, help="JSON list of calibration texts")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seqlen", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--group-size", type=int, default=128)
    args = parser.parse_args()

    import torch
    import lmdeploy.lite.apis.calibrate as calibrate_module
    from lmdeploy.lite.apis.auto_awq import auto_awq

    texts = json.loads(Path(args.calib).read_text(encoding="utf-8"))
    calibrate_module.get_calib_loaders, stats = local_loader(texts)
    calibrate_module.load_hf_from_pretrained = fix_loaded_model(calibrate_module.load_hf_from_pretrained)
    torch.cuda.reset_peak_memory_stats()
    start = time.monotonic()
    # The dataset name only passes LMDeploy's argument check: our loader ignores it.
    auto_awq(args.model, work_dir=args.out, calib_dataset="wikitext2", calib_samples=args.samples,
             calib_seqlen=args.seqlen, batch_size=args.batch_size, w_bits=4, w_group_size=args.group_size,
             dtype="float16", trust_remote_code=True)
    stats.update(seconds=round(time.monotonic() - start, 1),
                 peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20))
    (Path(args.out) / "kit_awq.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
