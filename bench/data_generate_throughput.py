"""`kit data generate` throughput against its concurrency limit, on a loopback server.

The server (a separate process, so it never competes with the client for the event loop) answers
every chat completion after a fixed injected latency with a valid, unique bajie dialogue. With C
calls in flight and latency L, N dialogues can at best take ceil(N / C) * L seconds; the figure is
that ideal over the measured wall time (goal: >= 90 %). Everything the real command does per call
runs: request hashing, the cache (flushed per call, fsynced in groups), parsing, filters, dedup, the
output file. Each row also records the client's CPU time per call and the 1-minute load average.

    python bench/data_generate_throughput.py [--latency 0.2 2] [--concurrency 1 4 16 64] [--out FILE]
"""

import argparse
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHARS = "山水风云花草树木日月星辰春夏秋冬东西南北吃喝睡走跑跳唱笑哭说看听想爱恨饭菜果酒茶米面瓜桃梨枣"


def serve(port_file: Path, latency: float) -> None:
    import asyncio

    import uvicorn
    from fastapi import FastAPI

    app, rng = FastAPI(), random.Random(0)

    @app.post("/v1/chat/completions")
    async def completions(body: dict):
        await asyncio.sleep(latency)
        turns = []
        for _ in range(2):
            turns += [{"role": "user", "content": "".join(rng.choices(CHARS, k=12)) + "？"},
                      {"role": "assistant", "content": "俺老猪" + "".join(rng.choices(CHARS, k=30)) + "。"}]
        content = json.dumps({"dialogue": turns}, ensure_ascii=False)
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 60, "total_tokens": 160}}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        port_file.write_text(str(server.servers[0].sockets[0].getsockname()[1]))
        await task

    asyncio.run(run())


def measure(base_url: str, concurrency: int, n: int, work: Path) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one generate() run."""
    from rich.console import Console

    from kit.data.generate import Settings, generate
    from kit.persona import persona_for

    settings = Settings(model="bench", base_url=base_url, n=n, concurrency=concurrency, timeout=30)
    work.mkdir(exist_ok=True)
    out = work / f"c{concurrency}.jsonl"
    start, cpu = time.perf_counter(), time.process_time()
    written = generate(persona_for("bajie"), settings, out, console=Console(file=io.StringIO()))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if written != n:
        raise SystemExit(f"concurrency {concurrency}: {written}/{n} dialogues written")
    return seconds, cpu


def run_latency(latency: float, concurrency: list[int], rounds: int) -> list[dict]:
    """One row per concurrency, against a fresh server that answers after `latency` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        work, port_file = Path(tmp), Path(tmp) / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file),
                                   "--latency", str(latency)])
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the loopback server did not start")
                time.sleep(0.05)
            base_url = f"http://127.0.0.1:{port_file.read_text()}/v1"
            measure(base_url, 2, 4, work / "warmup")  # imports and the first connection stay out of the figures
            rows = []
            for c in concurrency:
                n, load = rounds * c, os.getloadavg()[0]
                seconds, cpu = measure(base_url, c, n, work)
                ideal = math.ceil(n / c) * latency
                rows.append({"latency_s": latency, "concurrency": c, "dialogues": n, "seconds": seconds,
                             "ideal_seconds": ideal, "calls_per_s": n / seconds,
                             "efficiency": ideal / seconds, "client_cpu_ms_per_call": 1000 * cpu / n,
                             "load_1m": load})
        finally:
            server.terminate()
            server.wait(timeout=10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, nargs="+", default=[0.2, 2.0], help="seconds per call")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--rounds", type=int, default=8, help="dialogues per run = rounds x concurrency")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # internal: the server process
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.latency[0])
    rows = [row for latency in args.latency for row in run_latency(latency, args.concurrency, args.rounds)]
    print(f"{'latency':>7}{'C':>5}{'N':>6}{'s':>8}{'ideal s':>9}{'calls/s':>9}{'eff':>7}"
          f"{'cpu ms/call':>12}{'load':>6}")
    for r in rows:
        print(f"{r['latency_s']:>7}{r['concurrency']:>5}{r['dialogues']:>6}{r['seconds']:>8.2f}"
              f"{r['ideal_seconds']:>9.2f}{r['calls_per_s']:>9.1f}{r['efficiency']:>7.1%}"
              f"{r['client_cpu_ms_per_call']:>12.2f}{r['load_1m']:>6.2f}")
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
                                        "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
