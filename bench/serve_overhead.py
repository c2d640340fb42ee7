"""`kit serve` against the bare LMDeploy engine: same model, same GPU, same load (goal: <= 5 % slower).

    python bench/serve_overhead.py MODEL [--streams 64] [--max-tokens 256] [--rounds 3] [--out FILE]

Runs on the GPU machine (bench/serve_gpu.sh overhead sets up the environment). First
`kit serve --engine lmdeploy --tuned MODEL --no-ui`, as a user starts it; then
`lmdeploy serve api_server MODEL --backend pytorch` with LMDeploy's own defaults. Each gets the same
load from the official openai client: five single 16-token requests (latency), then `--rounds` bursts
of `--streams` concurrent streams of `--max-tokens` tokens (ignore_eos, so every stream is as long).
Every request carries the persona system prompt itself, so both servers render the same prompt
whichever chat template they picked; the prompt tokens each counted are printed to show it.
Overhead = 1 - kit's median tokens/s over the bare engine's.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_client import concurrent  # noqa: E402  (a sibling script, not a package)

KIT = [sys.executable, "-c", "from kit.cli import main; main()"]
READY_TIMEOUT = 420


def gpu_used_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def start_kit(model: Path, port: int, log: Path) -> tuple[subprocess.Popen, str, str]:
    """kit serve as a user runs it; returns the process and the URL and model name it printed."""
    proc = subprocess.Popen([*KIT, "serve", "--engine", "lmdeploy", "--tuned", str(model), "--no-ui",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    ready, lines = threading.Event(), []

    def pump():  # to the log for as long as kit runs, so its pipe never fills and blocks it
        with log.open("w") as f:
            for line in proc.stdout:
                f.write(line)
                f.flush()
                lines.append(line)
                if "Ctrl-C stops everything" in line:
                    ready.set()
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.wait(1):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"kit serve did not start; see {log}")
    found = re.search(r"→ (http://\S+/v1)\s+\(model '(\w+)'\)", "".join(lines))
    return proc, found[1], found[2]


def start_bare(model: Path, port: int, log: Path) -> tuple[subprocess.Popen, str, str]:
    """LMDeploy's api_server with its defaults (KV cache 0.8 of free memory, its own template match)."""
    python = os.environ.get("KIT_LMDEPLOY_PYTHON", sys.executable)
    with log.open("w") as f:
        proc = subprocess.Popen([python, "-m", "lmdeploy", "serve", "api_server", str(model), "--backend", "pytorch",
                                 "--server-port", str(port), "--trust-remote-code"], stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}/v1", time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            r = httpx.get(f"{url}/models", timeout=2)
            if r.status_code == 200:
                return proc, url, r.json()["data"][0]["id"]
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop(proc)
    raise SystemExit(f"bare LMDeploy did not start; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group (kit stops its LMDeploy child itself), then wait for the GPU to empty."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 60
    while gpu_used_mib() > 1024 and time.monotonic() < deadline:
        time.sleep(1)


def short_request(url: str, model: str, system: str) -> tuple[float, int]:
    """Seconds for one 16-token answer, and the prompt tokens the server counted. (Not time to first
    token: the random-weight model's tokens past the small tokenizer's vocabulary stream as empty text.)"""
    c = openai.OpenAI(base_url=url, api_key="none", timeout=300, max_retries=0)
    t = time.monotonic()
    r = c.chat.completions.create(model=model, messages=[{"role": "system", "content": system},
                                                         {"role": "user", "content": "你是谁？"}],
                                  max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
    return time.monotonic() - t, r.usage.prompt_tokens


def measure(name: str, url: str, model: str, args, system: str) -> dict:
    asyncio.run(concurrent(url, model, 8, 16, system=system))  # warm-up: kernels, graphs, the first connection
    single = [short_request(url, model, system) for _ in range(5)]
    bursts = [asyncio.run(concurrent(url, model, args.streams, args.max_tokens, system=system, ignore_eos=True))
              for _ in range(args.rounds)]
    row = {"server": name, "gpu_used_mib": gpu_used_mib(), "prompt_tokens": single[0][1],
           "short_request_s_median": round(statistics.median(t for t, _ in single), 4),
           "tok_per_s_rounds": [b["concurrent_tok_per_s"] for b in bursts],
           "tokens_per_round": bursts[0]["concurrent_tokens"]}
    row["tok_per_s_median"] = statistics.median(row["tok_per_s_rounds"])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--logs", type=Path, default=Path("/tmp"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from kit.persona import persona_for

    system = persona_for("bajie").system_prompt
    rows = []
    for name, start, port in [("kit serve", start_kit, 23360), ("bare lmdeploy", start_bare, 23370)]:
        t = time.monotonic()
        proc, url, model = start(args.model, port, args.logs / f"overhead-{port}.log")
        print(f"{name}: ready after {time.monotonic() - t:.0f}s at {url} (model {model!r})", flush=True)
        try:
            rows.append(measure(name, url, model, args, system))
        finally:
            stop(proc)
    kit, bare = rows
    result = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "streams": args.streams,
              "max_tokens": args.max_tokens, "rows": rows,
              "overhead": round(1 - kit["tok_per_s_median"] / bare["tok_per_s_median"], 4)}
    print(f"kit serve {kit['tok_per_s_median']:.0f} tok/s vs bare LMDeploy {bare['tok_per_s_median']:.0f} tok/s "
          f"→ overhead {result['overhead']:.1%}; a 16-token answer {kit['short_request_s_median']:.3f} vs "
          f"{bare['short_request_s_median']:.3f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
