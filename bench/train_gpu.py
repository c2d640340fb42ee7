"""GPU verification of recipes/bajie.py: QLoRA on an InternLM2-1.8B-shaped model, on the whole GPU
and inside torch.cuda.set_per_process_memory_fraction(0.1) (the course's 10% A100 slice, ~8 GB).

The recipe runs unchanged through kit's own launcher (kit.train.run); the bench only points it at a
random-weight model and synthetic persona data, and shortens the chat hook's replies (random
weights never stop talking). Tokens/s come from XTuner's per-iteration times (packed 2048-token
rows, batch_size of them per iteration), peak memory from torch.cuda.max_memory_allocated in the training process,
compared with kit's memory plan.

    python bench/train_gpu.py --out DIR [--rows 70] [--fractions 1.0 0.1]
    python bench/train_gpu.py --out DIR --cpu-smoke      # tiny model, KIT_VARIANT=cpu: plumbing only
Writes DIR/train_gpu.json.
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from build_1p8b_shape import build_1p8b_shape  # noqa: E402

from kit.persona import load_persona  # noqa: E402
from kit.train.memory_plan import plan_memory, shape_from_config  # noqa: E402
from kit.train.preflight import load_recipe, recipe_facts  # noqa: E402
from kit.train.progress import parse_iter_line  # noqa: E402
from kit.train.report import write_report  # noqa: E402
from kit.train.run import OUTPUT_LOG, recipe_env, run_xtuner, xtuner_command  # noqa: E402

RECIPE = ROOT / "recipes" / "bajie.py"
BENCH_OPTIONS = ["--cfg-options", "custom_hooks.1.max_new_tokens=16", "randomness.seed=0"]


def write_data(path: Path, tokenizer_dir: Path, rows: int, row_tokens: int) -> int:
    """Persona dialogues (system prompt in each, as `kit data build` writes) filling `rows` packed rows."""
    from transformers import AutoTokenizer

    persona = load_persona(ROOT / "datasets" / "bajie" / "persona.yaml")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=True)
    rng = random.Random(0)
    lines = persona.sample_lines + persona.catchphrases
    samples, tokens = [], 0
    while tokens < rows * row_tokens:
        q = rng.choice(persona.probe_questions + [f"说说{t}吧。" for t in persona.topics])
        a = "".join(rng.choice(lines) for _ in range(rng.randint(2, 6)))
        samples.append({"messages": [{"role": "system", "content": persona.system_prompt},
                                     {"role": "user", "content": q},
                                     {"role": "assistant", "content": a}]})
        tokens += len(tok(persona.system_prompt + q + a)["input_ids"]) + 12  # + template tokens
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
    return len(samples)


def iteration_times(log: Path, skip: int) -> list[float]:
    times = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        it = parse_iter_line(line)
        if it and it.seconds is not None and it.iter > skip:
            times.append(it.seconds)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=70, help="packed rows per epoch (3 epochs)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    out = args.out.resolve()
    import torch

    if args.cpu_smoke:
        from kit.tiny import build_tiny_model

        model, row_tokens = build_tiny_model(), 256
    else:
        start = time.monotonic()
        model, row_tokens = build_1p8b_shape(out / "model"), 2048
        print(f"built the 1.8B-shaped model in {time.monotonic() - start:.0f}s", flush=True)
    data = out / "data" / "train.jsonl"
    n_samples = write_data(data, model, args.rows, row_tokens)
    # The recipe's own settings (method, rows per step, kit.train.fast or not), as kit train plans them.
    setup = recipe_facts(load_recipe(RECIPE, recipe_env(model, data.parent, cpu=args.cpu_smoke))).setup
    plan = plan_memory(shape_from_config(model / "config.json"), setup)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    total_mib = torch.cuda.get_device_properties(0).total_memory / 2**20 if gpu != "cpu" else None
    report = {"gpu": gpu, "gpu_total_mib": total_mib, "torch": torch.__version__,
              "recipe": "recipes/bajie.py", "samples": n_samples, "row_tokens": row_tokens,
              "rows_per_iter": setup.batch, "fast": setup.fast,
              "plan_peak_mib": round(plan.peak_mib), "plan_reserved_mib": round(plan.reserved_mib),
              "runs": []}
    for fraction in args.fractions:
        work = out / f"work_f{fraction:g}"
        env = recipe_env(model, data.parent, cpu=args.cpu_smoke,
                         gpu_fraction=fraction if fraction < 1 else None)
        start = time.monotonic()
        result = run_xtuner(xtuner_command(RECIPE, work) + BENCH_OPTIONS, work, env)
        wall = time.monotonic() - start
        times = iteration_times(work / OUTPUT_LOG, skip=20)
        sec = statistics.median(times) if times else None
        run = {"fraction": fraction, "budget_mib": total_mib * fraction if total_mib else None,
               "iters": int(result.checkpoints[-1].stem.split("_")[1]), "wall_s": round(wall, 1),
               "last_loss": result.last_loss, "sec_per_iter_median": sec,
               "tokens_per_s": round(row_tokens * setup.batch / sec) if sec else None, "peak": result.peaks,
               "checkpoints": [p.name for p in result.checkpoints]}
        if result.peaks:
            peak = result.peaks[0]["max_allocated_mib"]
            run["plan_error_pct"] = round(100 * (plan.peak_mib - peak) / peak, 1)
        write_report(work)
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        for ckpt in result.checkpoints:  # ~0.75 GB each on the 1.8B shape: keep the disk free
            ckpt.unlink()
    (out / "train_gpu.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
