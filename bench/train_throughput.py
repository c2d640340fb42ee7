"""Stock XTuner QLoRA vs kit.train.fast, same GPU run, same model shape, same packed data.

Both sides run through XTuner's real loop (`python -m xtuner.tools.train CONFIG`). The stock config
is XTuner's own internlm2_chat_1_8b_qlora_custom_sft_e1.py file, unchanged except for what a bench
must set (model and data paths, max_iters, seed, no sample generation or checkpoints, the
measuring hook). Ours is that config plus the lines FAST_OVERRIDES prints: the recipe change.

    python bench/train_throughput.py --out DIR [--variants stock ours:b=8 ...] [--iters N]
    python bench/train_throughput.py --cpu-smoke --out DIR     # tiny model, LoRA fp32: plumbing only

A variant is LABEL[:key=val...]; keys: b (packed rows per step), ckpt (checkpointed layers),
liger (0: without liger-kernel on the path), fuselora (0: peft's own LoRA forward), fp16 (1: fp16
weights, compute and AMP as stock, instead of bf16), cap (GPU memory fraction), capgib (GPU memory
cap in GiB: the same slice on any card), ds (zero1|zero2|zero3: DeepSpeed through torchrun, one
process per GPU, as `kit train --deepspeed` runs it), iters, profile (1:
dump torch.profiler's top kernels). Labels starting with "stock" run the stock config.
Prints a table; writes DIR/train_throughput.json (keys ratio, peak_mem_ours, peak_mem_stock, ...).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from build_1p8b_shape import build_1p8b_shape  # noqa: E402

STOCK_CONFIG = "configs/custom_dataset/sft/internlm/internlm2_chat_1_8b_qlora_custom_sft_e1.py"
ROWS_PER_STOCK_STEP = 16  # stock: batch 1 x 16 accumulation

# What a bench run sets on either side. Mutations after the stock file's own assignments.
COMMON_OVERRIDES = """
from kit.train.fast import MemoryCapHook, ThroughputHook
pretrained_model_name_or_path = {model!r}
tokenizer['pretrained_model_name_or_path'] = {model!r}
model['llm']['pretrained_model_name_or_path'] = {model!r}
train_dataset['dataset']['data_files'] = [{data!r}]
train_dataset['shuffle_before_pack'] = False  # identical packed rows in every run (the loss check)
train_dataset['map_num_proc'] = 8
train_cfg = dict(type=TrainLoop, max_iters={iters})
custom_hooks = [dict(type=ThroughputHook, out={result!r}, warmup={warmup}, profile_iters={profile})]
default_hooks['checkpoint'] = dict(type=CheckpointHook, interval=10**9, save_last=False)
randomness = dict(seed=0, deterministic=False)
# A flat LR: the stock warmup spans 3% of an epoch, which rounds to zero iterations on bench data.
from mmengine.optim import ConstantLR
param_scheduler = [dict(type=ConstantLR, factor=1.0, by_epoch=False, begin=0, end=10**9)]
"""

# The recipe change: the same model, LoRA and loss, run by kit.train.fast.
FAST_OVERRIDES = """
from kit.train.fast import FastSupervisedFinetune, packed_collate_fn
model['type'] = FastSupervisedFinetune
model['checkpoint_layers'] = {ckpt}
model['fuse_lora'] = {fuse}
model['llm']['torch_dtype'] = torch.bfloat16
model['llm']['quantization_config']['bnb_4bit_compute_dtype'] = torch.bfloat16
train_dataset['use_varlen_attn'] = True  # keeps the document boundaries of packed rows
train_dataloader['batch_size'] = {b}  # packed rows per step, flattened into one varlen row
train_dataloader['collate_fn'] = dict(type=packed_collate_fn)
optim_wrapper['accumulative_counts'] = {accum}  # still 16 rows per optimizer step
optim_wrapper['dtype'] = 'bfloat16'
"""

# fp16=1: stock's number format (fp16 weights, 4-bit compute and AMP with loss scaling) instead of bf16.
FP16_OVERRIDES = """
model['llm']['torch_dtype'] = torch.float16
model['llm']['quantization_config']['bnb_4bit_compute_dtype'] = torch.float16
optim_wrapper['dtype'] = 'float16'
"""

# --cpu-smoke: the tiny model has no 4-bit path on CPU; plain LoRA in fp32 checks the plumbing.
CPU_OVERRIDES = """
from mmengine.optim import OptimWrapper
model['llm']['quantization_config'] = None
model['llm']['torch_dtype'] = torch.float32
optim_wrapper = dict(type=OptimWrapper, optimizer=optim_wrapper['optimizer'],
                     clip_grad=optim_wrapper['clip_grad'], accumulative_counts=optim_wrapper['accumulative_counts'])
max_length = 256
train_dataset['max_length'] = 256
"""

# torch.cpu has no is_bf16_supported, which XTuner's model builder calls on a CPU-only host.
CPU_LAUNCH = ("import sys, runpy, torch; torch.cpu.is_bf16_supported = lambda: False; "
              "sys.argv = sys.argv[1:]; runpy.run_module('xtuner.tools.train', run_name='__main__')")


def make_data(path: Path, conversations: int, seed: int = 0) -> Path:
    """Role-play-shaped dialogues (persona system prompt, 1-3 turns) of random characters."""
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + list("，。？！")

    def text(lo, hi):
        return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))

    with path.open("w", encoding="utf-8") as f:
        for _ in range(conversations):
            messages = [{"role": "system", "content": text(60, 120)}]
            for _ in range(rng.randint(1, 3)):
                messages += [{"role": "user", "content": text(10, 120)},
                             {"role": "assistant", "content": text(40, 500)}]
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


def parse_variant(spec: str) -> dict:
    label, *pairs = spec.split(":")
    v = {"label": label, "stock": label.startswith("stock"), "b": 4, "ckpt": None, "liger": 1,
         "cap": None, "capgib": None, "iters": None, "profile": 0, "fuselora": 1, "fp16": 0, "ds": None}
    for pair in pairs:
        key, val = pair.split("=")
        v[key] = float(val) if key in ("cap", "capgib") else int(val) if val.isdigit() else val
    return v


def config_text(v: dict, model: Path, data: Path, result: Path, iters: int, cpu: bool) -> str:
    import xtuner

    text = (Path(xtuner.__file__).parent / STOCK_CONFIG).read_text(encoding="utf-8")
    warmup = max(2, iters // 5)
    profile = (warmup, warmup + 3) if v["profile"] else None
    text += COMMON_OVERRIDES.format(model=str(model), data=str(data), iters=iters, result=str(result),
                                    warmup=warmup, profile=profile)
    if v["cap"] or v["capgib"]:
        text += f"custom_hooks.append(dict(type=MemoryCapHook, fraction={v['cap']}, gib={v['capgib']}))\n"
    if not v["stock"]:
        text += FAST_OVERRIDES.format(b=v["b"], ckpt=v["ckpt"], fuse=bool(v["fuselora"]), accum=max(1, ROWS_PER_STOCK_STEP // v["b"]))
        if v["fp16"]:
            text += FP16_OVERRIDES
    if cpu:
        text += CPU_OVERRIDES
    return text


def run_variant(v: dict, args, model: Path, data: Path) -> dict:
    work = args.out / v["label"]
    work.mkdir(parents=True, exist_ok=True)
    result = work / "throughput.json"
    iters = v["iters"] or (args.iters if not v["stock"] else args.stock_iters)
    cfg = work / "config.py"
    cfg.write_text(config_text(v, model, data, result, iters, args.cpu_smoke), encoding="utf-8")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not v["liger"]:
        env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                            if "liger" not in p)
    launch = [sys.executable, "-c", CPU_LAUNCH, "xtuner.tools.train"] if args.cpu_smoke else \
        [sys.executable, "-m", "xtuner.tools.train"]
    extra = []
    if v["ds"]:  # DeepSpeed needs a process group: torchrun gives one even to a single GPU
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_addr=127.0.0.1",
                  f"--master_port={random.randint(20000, 29999)}", "-m", "xtuner.tools.train"]
        extra = ["--deepspeed", f"deepspeed_{v['ds']}", "--launcher", "pytorch"]
    start = time.time()
    try:
        with (work / "train.log").open("w") as log:
            rc = subprocess.run([*launch, str(cfg), "--work-dir", str(work), *extra], stdout=log,
                                stderr=subprocess.STDOUT, env=env, timeout=args.timeout).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    # XTuner can exit 0 after a crash: the hook's result file is the proof that training ran.
    if rc != 0 or not result.exists():
        tail = (work / "train.log").read_text(errors="replace")[-2500:]
        print(f"{v['label']} FAILED (rc={rc}):\n{tail}", flush=True)
        return {"variant": v, "error": tail[-800:]}
    out = json.loads(result.read_text())
    out.update(variant=v, wall_s=time.time() - start)
    return out


def matmul_peak_tflops() -> float | None:
    """Dense bf16 matmul rate measured on this GPU: the MFU denominator."""
    import torch

    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def matmul_params(model: Path) -> int:
    c = json.loads((model / "config.json").read_text())
    d, h, kv, i = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
    head_dim = d // h
    per_layer = d * (h + 2 * kv) * head_dim + d * d + 3 * d * i
    return c["num_hidden_layers"] * per_layer + c["vocab_size"] * d


def loss_check(stock: dict, ours: dict) -> dict:
    """Ours' loss at step j against stock's over the same packed rows, weighted by tokens with a loss.

    Before the first optimizer step (16 rows) both models hold the same weights: there the
    difference is numerics (bf16 vs fp16) and stock's attention across packed documents.
    """
    b = ours["variant"]["b"]
    rows = stock["records"]
    steps = []
    for j, r in enumerate(ours["records"]):
        part = rows[j * b:(j + 1) * b]
        if len(part) < b:
            break
        want = sum(x["loss"] * x["loss_tokens"] for x in part) / sum(x["loss_tokens"] for x in part)
        steps.append({"step": j, "ours": r["loss"], "stock": want, "before_update": (j + 1) * b <= ROWS_PER_STOCK_STEP})
    diffs = [abs(x["ours"] - x["stock"]) for x in steps]
    pre = [abs(x["ours"] - x["stock"]) / x["stock"] for x in steps if x["before_update"]]
    return {"steps": steps, "max_abs_diff": max(diffs, default=None),
            "max_rel_diff_before_update": max(pre, default=None),
            "stock_row_loss_std": statistics.pstdev(x["loss"] for x in rows) if len(rows) > 1 else None}


def _gib(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def add_run_args(ap: argparse.ArgumentParser, iters: int, stock_iters: int, timeout: int) -> None:
    """The options every training bench shares (run_variant reads them)."""
    ap.add_argument("--iters", type=int, default=iters, help="iterations of each of our variants")
    ap.add_argument("--stock-iters", type=int, default=stock_iters)
    ap.add_argument("--model", type=Path, default=Path("/tmp/kit-bench/internlm2-1p8b-shape"))
    ap.add_argument("--cpu-smoke", action="store_true", help="the tiny model, LoRA fp32: plumbing only")
    ap.add_argument("--timeout", type=int, default=timeout, help="seconds per variant")


def bench_model(args) -> Path:
    """The InternLM2-1.8B-shaped model, or the tiny one for --cpu-smoke."""
    if args.cpu_smoke:
        from kit.tiny import build_tiny_model

        return build_tiny_model()
    return build_1p8b_shape(args.model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["stock", "ours:b=8", "ours-fp16:b=8:fp16=1", "stock-again"])
    add_run_args(ap, iters=30, stock_iters=40, timeout=300)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [parse_variant(s) for s in args.variants]
    model = bench_model(args)
    rows_needed = max((v["iters"] or (args.stock_iters if v["stock"] else args.iters)) * (1 if v["stock"] else v["b"])
                      for v in variants)
    data = make_data(args.out / "data.jsonl", conversations=rows_needed * 4 + 50)
    peak = matmul_peak_tflops()
    flops_per_token = 6 * matmul_params(model)
    runs, failed = {}, {}
    for v in variants:
        r = run_variant(v, args, model, data)
        if "error" in r:
            failed[v["label"]] = r["error"]
            continue
        runs[v["label"]] = r
        r["mfu"] = r["tokens_per_s"] * flops_per_token / (peak * 1e12) if peak else None
        print(f"{v['label']}: {r['tokens_per_s']:.0f} tok/s, peak {r['peak_mem_allocated_gib']} GiB", flush=True)

    import torch

    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "matmul_peak_tflops": peak,
        "mfu_convention": "6 * N * tokens/s / measured bf16 matmul peak; N = matmul params (attention scores excluded)",
        "runs": {k: {kk: vv for kk, vv in r.items() if kk != "records"} for k, r in runs.items()},
        "losses": {k: [x["loss"] for x in r["records"]] for k, r in runs.items()},
        "failed": failed,
        **headline(runs),
    }
    (args.out / "train_throughput.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print_table(runs, summary)


def headline(runs: dict) -> dict:
    """The variant labelled "ours" (else the first of ours) against every stock run's steady
    iterations together (stock is CPU-bound, so its time moves with the host's load)."""
    stocks = [r for r in runs.values() if r["variant"]["stock"]]
    ours = [r for r in runs.values() if not r["variant"]["stock"]]
    if not stocks or not ours:
        return {}
    best = runs.get("ours") or ours[0]
    steady = [x for r in stocks for x in r["records"][r["iters"] - r["steady_iters"]:]]
    stock_tps = statistics.median(x["tokens"] for x in steady) / statistics.median(x["seconds"] for x in steady)
    return {"ours": best["variant"]["label"], "ratio": best["tokens_per_s"] / stock_tps,
            "peak_mem_ours": best["peak_mem_allocated_gib"],
            "peak_mem_stock": max((r["peak_mem_allocated_gib"] or 0 for r in stocks), default=None),
            "tokens_per_s_ours": best["tokens_per_s"], "tokens_per_s_stock": stock_tps,
            "loss_check": {r["variant"]["label"]: loss_check(stocks[0], r) for r in ours}}


def print_table(runs: dict, summary: dict) -> None:
    print(f"\n{'variant':<22}{'tok/s':>9}{'s/iter':>8}{'tok/iter':>9}{'MFU':>7}{'peak GiB':>9}{'resv GiB':>9}")
    for k, r in runs.items():
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
        print(f"{k:<22}{r['tokens_per_s']:>9.0f}{r['seconds_per_iter']:>8.3f}{r['tokens_per_iter']:>9.0f}{mfu:>7}"
              f"{_gib(r['peak_mem_allocated_gib']):>9}{_gib(r['peak_mem_reserved_gib']):>9}")
    if "ratio" not in summary:
        return
    print(f"ratio {summary['ratio']:.2f}x ({summary['ours']} vs stock {summary['tokens_per_s_stock']:.0f} tok/s), "
          f"peak {_gib(summary['peak_mem_ours'])} vs {_gib(summary['peak_mem_stock'])} GiB")
    for label, c in summary["loss_check"].items():
        pre = c["max_rel_diff_before_update"]
        print(f"loss {label}/stock on the same rows: " + ", ".join(f"{x['ours']:.3f}/{x['stock']:.3f}" for x in c["steps"])
              + f"; before the first update max rel diff {'-' if pre is None else f'{pre:.2%}'}"
              + f"; stock per-row std {c['stock_row_loss_std']:.3f}")

if __name__ == "__main__":
    main()
