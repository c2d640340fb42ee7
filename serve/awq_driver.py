"""LMDeploy AWQ W4A16 with our own calibration text. Runs under LMDeploy's interpreter, not kit's.

`lmdeploy lite auto_awq` only knows hub datasets (wikitext2, c4, ...), which fail offline. Its
calibrate() looks up get_calib_loaders in its own module at call time, so replacing that one name
feeds it the character's text and leaves the rest of LMDeploy's AWQ untouched.

  python awq_driver.py MODEL OUT --calib texts.json [--samples N --seqlen L --batch-size B --group-size G]
Writes the quantized model to OUT and a JSON summary (time, peak GPU memory, tokens) to OUT/kit_awq.json.
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


def list_tied_keys_to_dict(load):
    """transformers 5 wants `_tied_weights_keys` as a dict and save_pretrained fails on the list that
    InternLM2's remote code (written for 4.x) declares. Our models tie nothing: give it an empty dict."""
    def wrapped(*args, **kwargs):
        model = load(*args, **kwargs)
        if isinstance(getattr(model, "_tied_weights_keys", None), list) and \
                not getattr(model.config, "tie_word_embeddings", False):
            model._tied_weights_keys = {}
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
    calibrate_module.load_hf_from_pretrained = list_tied_keys_to_dict(calibrate_module.load_hf_from_pretrained)
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
