"""kit.train.fast against LLaMA-Factory and stock XTuner: one GPU call, one model, one problem.

Every side trains the InternLM2-Chat-1.8B-shaped model (bench/build_1p8b_shape.py) on the same
synthetic role-play dialogues (bench/train_throughput.py's make_data) packed to 2048 tokens, with the
same problem: QLoRA nf4 + double quant, LoRA r=64 α=16 dropout 0.1 on wqkv, wo, w1, w2, w3 and the
`output` head, 16 packed rows per optimizer step, AdamW lr 2e-4, mean token loss over the assistant
tokens. XTuner's sides run through bench/train_throughput.py; LLaMA-Factory 0.9.5 runs through its own
`run_exp` (bench/peer_llamafactory.py) in its own stack, with its fastest settings for this model:
neat_packing (packing without cross-document attention), bf16, Liger on, its default gradient
checkpointing, and the best attention it can use here.

    bash bench/fetch_peer_wheels.sh lf .whl-lf        # on the CPU machine, once
    PYTHONPATH=SITE_XTUNER python bench/train_peers.py --out DIR --lf-site SITE_LF
    python bench/train_peers.py --cpu-smoke --out DIR --lf-site SITE_LF   # tiny model, LoRA fp32: plumbing

Variants: XTuner ones as in train_throughput.py (LABEL[:key=val]); LLaMA-Factory ones are `lf...` with
b (rows per micro-batch; accumulation makes 16), attn (auto, sdpa, disabled) and neat (0: plain packing,
whose attention crosses documents: another problem, shown for its speed).
Writes DIR/train_peers.json with the headline keys ours_tokens_per_s, llamafactory_tokens_per_s,
ours_peak_gib, llamafactory_peak_gib, ours_8gb_tokens_per_s; prints a table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_throughput import (ROWS_PER_STOCK_STEP, add_run_args, bench_model, make_data,  # noqa: E402
                              matmul_params, matmul_peak_tflops, parse_variant, run_variant)

LORA_TARGETS = "wqkv,wo,w1,w2,w3,output"  # what XTuner's recipe targets (its LoRA finds every Linear)


def lf_dataset(data: Path, folder: Path) -> Path:
    """The bench dialogues as a LLaMA-Factory dataset: OpenAI-style messages, system turn first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_bytes(data.read_bytes())
    info = {"bench": {"file_name": "data.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant", "system_tag": "system"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def lf_config(v: dict, model: Path, dataset_dir: Path, work: Path, steps: int, cpu: bool) -> dict:
    b = v["b"]
    cfg = {
        "model_name_or_path": str(model), "trust_remote_code": True,
        "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 64, "lora_alpha": 16, "lora_dropout": 0.1, "lora_target": LORA_TARGETS,
        "quantization_bit": 4, "quantization_method": "bnb", "quantization_type": "nf4",
        "double_quantization": True,
        "dataset": "bench", "dataset_dir": str(dataset_dir), "template": "intern2", "cutoff_len": 2048,
        "packing": True, "neat_packing": bool(v.get("neat", 1)), "preprocessing_num_workers": 8, "overwrite_cache": True,
        "output_dir": str(work / "out"), "overwrite_output_dir": True, "save_strategy": "no",
        "report_to": "none", "logging_steps": 1, "seed": 0, "data_seed": 0,
        "per_device_train_batch_size": b, "gradient_accumulation_steps": max(1, ROWS_PER_STOCK_STEP // b),
        "learning_rate": 2e-4, "lr_scheduler_type": "constant", "max_steps": steps, "max_grad_norm": 1.0,
        "bf16": True, "flash_attn": v.get("attn", "auto"), "enable_liger_kernel": True,
        "dataloader_num_workers": 2,
    }
    if cpu:  # the tiny model: no 4-bit path on CPU, fp32, short rows
        for key in ("quantization_bit", "quantization_method", "quantization_type", "double_quantization"):
            del cfg[key]
        cfg.update(bf16=False, cutoff_len=256, preprocessing_num_workers=1, dataloader_num_workers=0)
    return cfg


def run_lf(v: dict, args, model: Path, dataset_dir: Path) -> dict:
    work = args.out / v["label"]
    work.mkdir(parents=True, exist_ok=True)
    steps = v["iters"] or args.lf_steps
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(lf_config(v, model, dataset_dir, work, steps, args.cpu_smoke)), encoding="utf-8")
    result = work / "throughput.json"
    # LLaMA-Factory's stack only: none of XTuner's site (its transformers is another version).
    env = dict(os.environ, PYTHONPATH=str(args.lf_site), PYTHONUNBUFFERED="1", DISABLE_VERSION_CHECK="0",
               TOKENIZERS_PARALLELISM="false")
    start = time.time()
    try:
        with (work / "train.log").open("w") as log:
            rc = subprocess.run([sys.executable, str(ROOT / "bench" / "peer_llamafactory.py"), str(cfg), str(result)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, timeout=args.timeout, cwd=work).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    text = (work / "train.log").read_text(errors="replace")
    if rc != 0 or not result.exists():
        print(f"{v['label']} FAILED (rc={rc}):\n{text[-2500:]}", flush=True)
        return {"variant": v, "error": text[-800:]}
    out = json.loads(result.read_text())
    # What LLaMA-Factory said about its own fast paths, from its log.
    out["notes"] = [line.split(" >> ", 1)[-1].strip() for line in text.splitlines() if "llamafactory" in line
                    and any(k in line.lower() for k in ("liger", "attention", "packing", "checkpointing", "quantiz"))]
    out.update(variant=v, wall_s=time.time() - start)
    return out


def step_losses(run: dict) -> list[float]:
    """Mean token loss of each optimizer step (16 rows). At the first, every side's weights are the base's;
    after it, the same problem at the same learning rate should fall alike on every side."""
    records = run["records"]
    if run["variant"]["label"].startswith("lf"):
        return [r["loss"] for r in records]
    per_step = ROWS_PER_STOCK_STEP // (1 if run["variant"]["stock"] else run["variant"]["b"])
    steps = [records[i:i + per_step] for i in range(0, len(records) - per_step + 1, per_step)]
    return [sum(r["loss"] * r["loss_tokens"] for r in s) / sum(r["loss_tokens"] for r in s) for s in steps]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lf-site", type=Path, required=True, help="--target folder of bench/fetch_peer_wheels.sh lf")
    ap.add_argument("--variants", nargs="+",
                    default=["ours:b=8", "ours-8gb:b=8:capgib=8", "lf:b=4:attn=sdpa", "lf-b8:b=8:attn=sdpa", "stock"])
    ap.add_argument("--lf-steps", type=int, default=6, help="optimizer steps (16 rows each) of LLaMA-Factory")
    add_run_args(ap, iters=16, stock_iters=20, timeout=150)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(s) for s in args.variants]
    model = bench_model(args)
    rows = max(args.stock_iters, args.iters * 8, args.lf_steps * ROWS_PER_STOCK_STEP)
    data = make_data(args.out / "data.jsonl", conversations=rows * 4 + 50)
    dataset_dir = lf_dataset(data, args.out / "lf-data")
    peak = matmul_peak_tflops()
    flops_per_token = 6 * matmul_params(model)
    runs, failed = {}, {}
    for v in variants:
        is_lf = v["label"].startswith("lf")
        r = run_lf(v, args, model, dataset_dir) if is_lf else run_variant(v, args, model, data)
        if "error" in r:
            failed[v["label"]] = r["error"]
            continue
        # LLaMA-Factory's rows can end in padding: count the tokens it trained on.
        r["train_tokens_per_s"] = r["real_tokens_per_s"] if is_lf else r["tokens_per_s"]
        r["mfu"] = r["train_tokens_per_s"] * flops_per_token / (peak * 1e12) if peak else None
        r["step_losses"] = step_losses(r)
        r["first_step_loss"] = r["step_losses"][0] if r["step_losses"] else None
        runs[v["label"]] = r
        print(f"{v['label']}: {r['train_tokens_per_s']:.0f} tok/s, peak {r['peak_mem_allocated_gib']} GiB, "
              f"first-step loss {r['first_step_loss']}", flush=True)
    import torch

    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "matmul_peak_tflops": peak,
        "tokens_convention": "tokens trained on per second: XTuner packs rows full (input_ids.numel()); "
                             "LLaMA-Factory's neat_packing rows can end in padding, which is not counted",
        "runs": {k: {kk: vv for kk, vv in r.items() if kk != "records"} for k, r in runs.items()},
        "losses": {k: [x["loss"] for x in r["records"]] for k, r in runs.items()},
        "failed": failed,
        **headline(runs),
    }
    (args.out / "train_peers.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print_table(runs, summary)


def headline(runs: dict) -> dict:
    lf = [r for k, r in runs.items() if k.startswith("lf")]
    ours, ours_8gb = runs.get("ours"), runs.get("ours-8gb")
    best_lf = max(lf, key=lambda r: r["train_tokens_per_s"], default=None)
    first = [r["first_step_loss"] for r in runs.values() if r["first_step_loss"] is not None]
    out = {
        "ours_tokens_per_s": ours and ours["train_tokens_per_s"],
        "ours_peak_gib": ours and ours["peak_mem_allocated_gib"],
        "ours_8gb_tokens_per_s": ours_8gb and ours_8gb["train_tokens_per_s"],
        "ours_8gb_peak_gib": ours_8gb and ours_8gb["peak_mem_allocated_gib"],
        "llamafactory_best": best_lf and best_lf["variant"]["label"],
        "llamafactory_tokens_per_s": best_lf and best_lf["train_tokens_per_s"],
        "llamafactory_peak_gib": best_lf and best_lf["peak_mem_allocated_gib"],
        "first_step_loss": {k: r["first_step_loss"] for k, r in runs.items()},
        "step_losses": {k: r["step_losses"] for k, r in runs.items()},
        "first_step_loss_spread": (max(first) - min(first)) / statistics.mean(first) if first else None,
    }
    if ours and best_lf:
        out["ours_vs_llamafactory"] = ours["train_tokens_per_s"] / best_lf["train_tokens_per_s"]
    return out


def print_table(runs: dict, summary: dict) -> None:
    gib = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731  (losses print the same way)
    print(f"\n{'variant':<14}{'tok/s':>9}{'s/step':>8}{'MFU':>7}{'peak GiB':>9}{'resv GiB':>9}{'1st loss':>9}")
    for k, r in runs.items():
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
        print(f"{k:<14}{r['train_tokens_per_s']:>9.0f}{r['seconds_per_iter']:>8.3f}{mfu:>7}"
              f"{gib(r['peak_mem_allocated_gib']):>9}{gib(r['peak_mem_reserved_gib']):>9}{gib(r['first_step_loss']):>9}")
    if summary.get("ours_vs_llamafactory"):
        print(f"ours / LLaMA-Factory best ({summary['llamafactory_best']}): {summary['ours_vs_llamafactory']:.2f}x")


if __name__ == "__main__":
    main()
