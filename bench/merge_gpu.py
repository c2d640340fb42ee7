"""GPU check of `kit merge` on the real product path: a QLoRA checkpoint of recipes/bajie.py on an
InternLM2-Chat-1.8B-shaped model (bf16, random weights), merged on the GPU and on the CPU fallback.

    PYTHONPATH=/tmp/site-kit:/tmp/site-train python3 bench/merge_gpu.py --out DIR
Writes DIR/merge_gpu.json: per merge its wall time, peak GPU memory and the checks' figures.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from build_1p8b_shape import build_1p8b_shape  # noqa: E402
from train_gpu import write_data  # noqa: E402

from kit.train.run import recipe_env, run_xtuner, xtuner_command  # noqa: E402

# A short QLoRA run that leaves checkpoints: a higher LR so that the adapter moves the logits
# clearly beyond bf16 rounding (otherwise the logit check could not tell merged from base).
TRAIN_OPTIONS = ["--cfg-options", "custom_hooks.1.max_new_tokens=8", "randomness.seed=0",
                 "default_hooks.checkpoint.interval=10", "optim_wrapper.optimizer.lr=0.002"]


def main() -> None:
    import torch

    from kit.convert.merge import merge_run

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=8)
    args = ap.parse_args()
    out = args.out.resolve()
    work = Path("/tmp/merge_gpu")
    start = time.monotonic()
    base = build_1p8b_shape(work / "base")
    write_data(work / "data" / "train.jsonl", base, args.rows, 2048)
    report = {"gpu": torch.cuda.get_device_name(0), "build_s": round(time.monotonic() - start)}
    start = time.monotonic()
    result = run_xtuner(xtuner_command(ROOT / "recipes" / "bajie.py", work / "run") + TRAIN_OPTIONS,
                        work / "run", recipe_env(base, work / "data"))
    report["train"] = {"s": round(time.monotonic() - start), "loss": result.last_loss,
                       "checkpoints": [p.name for p in result.checkpoints]}
    report["merges"] = []
    for dtype, device in (("bf16", "auto"), ("fp16", "cuda"), ("bf16", "cpu")):
        torch.cuda.reset_peak_memory_stats()
        start = time.monotonic()
        merged = merge_run(work / "run", base, work / f"adapter_{dtype}_{device}",
                           work / f"merged_{dtype}_{device}", dtype=dtype, device=device)
        record = json.loads((merged / "kit_merge.json").read_text(encoding="utf-8"))
        report["merges"].append({"dtype": dtype, "device": record["device"],
                                 "s": round(time.monotonic() - start, 1),
                                 "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
                                 "checks": record["checks"]})
        print(json.dumps(report["merges"][-1], ensure_ascii=False), flush=True)
    (out / "merge_gpu.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    (out / "README_merged.md").write_text((merged / "README.md").read_text(encoding="utf-8"), "utf-8")


if __name__ == "__main__":
    main()
