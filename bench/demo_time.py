"""Wall time of README's two commands on this (CPU) machine: `make demo` cold and warm, `make test`.

    python bench/demo_time.py --out bench/results/DATE-cpu-demo-time.json [--test]

cold: an empty kit cache (KIT_CACHE in a scratch folder), so the tiny InternLM2 is pretrained from
scratch inside the run; warm: the same cache again, into a fresh workdir. Both start from an
environment `make env` has already built (uv sync is a no-op then, a second or two). Each stage's
time is read from the demo's own "done in" lines. --test also times `make test` (the cache it
uses is the user's, as CI's would be: cold on a fresh machine).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = re.compile(r"▶ (\w+):.*?done in ([\d.]+)s", re.S)
SAMPLE = re.compile(r"sample: (.*)")  # kit merge's greedy check reply


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def demo_run(label: str, cache: Path, scratch: Path) -> dict:
    seconds, out = timed(["make", "demo", f"WORKDIR={scratch / label}"], {"KIT_CACHE": str(cache)})
    report = json.loads((scratch / label / "eval" / "report.json").read_text(encoding="utf-8"))
    metrics = {name: {side: m[side] for side in ("base", "tuned")} for name, m in report["metrics"].items()}
    print(f"make demo ({label}): {seconds:.0f} s", flush=True)
    return {"seconds": round(seconds, 1), "stages": {k: float(v) for k, v in STAGE.findall(out)},
            "merge_sample": SAMPLE.search(out)[1], "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test", action="store_true", help="also time `make test`")
    parser.add_argument("--keep", type=Path, help="leave the cache and both workdirs here (default: removed)")
    args = parser.parse_args()
    if args.keep and args.keep.exists():
        raise SystemExit(f"--keep {args.keep}: name a new folder (the cold run needs an empty cache)")
    subprocess.run(["make", "env"], cwd=ROOT, check=True)  # not timed: the environment is set up once
    result = {"date": str(date.today()), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "limits": {"cold_demo_s": 360, "warm_demo_s": 180, "ci_s": 5400}}
    with tempfile.TemporaryDirectory(prefix="kit-demo-time-") as scratch:
        scratch = args.keep or Path(scratch)
        result["demo_cold"] = demo_run("cold", scratch / "cache", scratch)
        result["demo_warm"] = demo_run("warm", scratch / "cache", scratch)
    if args.test:
        seconds, out = timed(["make", "test"], {})
        result["make_test"] = {"seconds": round(seconds, 1), "summary": out.strip().splitlines()[-1]}
        print(f"make test: {seconds:.0f} s ({result['make_test']['summary']})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v["seconds"] for k, v in result.items() if isinstance(v, dict) and "seconds" in v}))


if __name__ == "__main__":
    main()
