"""deploy.json from what bench/deploy_gpu.sh gathered in its log folder, rewritten after each stage so a
run cut short still returns what it measured.

  python bench/deploy_report.py LOGS OUT.json
  python bench/deploy_report.py --combine OUT.json NAME=RUN.json …   (one file from several GPU calls)
LOGS holds facts.jsonl ({"key": value} lines from the script), client_NAME.jsonl (bench/serve_client.py:
one line per model), SERVER.log (kit serve's output, each line prefixed by its epoch time) and
drift/report.json (kit eval --drift). Prints a one-line summary.
"""

import json
import sys
from pathlib import Path

# The keys issue 18 asks for, present (null when not measured) in every deploy.json.
KEYS = ("ready_s", "one_server_mib", "two_server_mib", "fp16_single_tok_s", "w4a16_single_tok_s",
        "w4a16_plain_equals_stream", "drift")


def jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def phases(log: Path, t0: float) -> dict:
    """Seconds from `kit serve`'s start to the landmarks in its time-stamped output."""
    marks = {"first_server_started": "starting LMDeploy", "graph_warmup_first": "Warming up decoding",
             "first_server_answers": "answers after", "ready": "Ctrl-C stops everything"}
    seen, last_warmup = {}, None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        try:
            t = round(float(stamp) - t0, 1)
        except ValueError:
            continue
        for key, needle in marks.items():
            if needle in text:
                seen.setdefault(key, t)
        if "Warming up decoding" in text:
            last_warmup = t
    if last_warmup is not None:
        seen["graph_warmup_last"] = last_warmup
    return seen


def drift_entries(report: Path) -> tuple[list[dict] | None, bool | None]:
    if not report.is_file():
        return None, None
    section = json.loads(report.read_text(encoding="utf-8")).get("drift") or {}
    keep = ("stage", "against", "quantized", "agreement", "agreement_with_reference", "replies", "differing",
            "mean_first_divergence", "perplexity_change", "passed")
    entries = [{**{k: c.get(k) for k in keep},
                "checks": {k["metric"]: {"value": k["value"], "passed": k["passed"], "rule": k["rule"]}
                           for k in c["checks"]}} for c in section.get("comparisons", [])]
    return entries, section.get("passed")


def main(logs: Path, out: Path) -> None:
    facts = {}
    for fact in jsonl(logs / "facts.jsonl"):
        facts |= fact
    clients = {p.stem.removeprefix("client_"): jsonl(p) for p in sorted(logs.glob("client_*.jsonl"))}
    by = {(run, r["model"]): r for run, rows in clients.items() for r in rows}

    def client(run: str, model: str, key: str):
        return by.get((run, model), {}).get(key)

    def both(run: str, key: str):
        values = [client(run, m, key) for m in ("base", "tuned")]
        return None if None in values else all(values)

    result = dict.fromkeys(KEYS) | {k: v for k, v in facts.items() if not k.startswith("t0_")}
    result |= {
        "fp16_single_tok_s": client("one", "base", "tok_per_s_single"),
        "fp16_first_request_tok_s": client("one", "base", "tok_per_s_first_request"),
        "cold_start_first_request_tok_s": client("cold", "base", "tok_per_s_first_request"),
        "fp16_adapter_single_tok_s": client("one", "tuned", "tok_per_s_single"),
        "one_server_plain_equals_stream": both("one", "plain_equals_stream"),
        "one_server_persona_default_applied": both("one", "persona_default_applied"),
        "eager_single_tok_s": client("eager", "base", "tok_per_s_single"),
        "eager_adapter_single_tok_s": client("eager", "tuned", "tok_per_s_single"),
        "two_server_single_tok_s": [client("two", m, "tok_per_s_single") for m in ("base", "tuned")],
        "w4a16_single_tok_s": client("w4a16", "tuned", "tok_per_s_single"),
        "w4a16_first_request_tok_s": client("w4a16", "tuned", "tok_per_s_first_request"),
        "w4a16_plain_equals_stream": client("w4a16", "tuned", "plain_equals_stream"),
        "w4a16_32_streams_tok_s": client("w4a16", "tuned", "concurrent_tok_per_s"),
        "kv_int8_single_tok_s": client("kv_int8", "tuned", "tok_per_s_single"),
        "kv_int8_plain_equals_stream": client("kv_int8", "tuned", "plain_equals_stream"),
        "kv_int8_32_streams_tok_s": client("kv_int8", "tuned", "concurrent_tok_per_s"),
        "speed_fp16_single_tok_s": client("speed_fp16", "tuned", "tok_per_s_single"),
        "speed_w4a16_single_tok_s": client("speed_w4a16", "tuned", "tok_per_s_single"),
        "speed_fp16_32_streams_tok_s": client("speed_fp16", "tuned", "concurrent_tok_per_s"),
        "speed_w4a16_32_streams_tok_s": client("speed_w4a16", "tuned", "concurrent_tok_per_s"),
        # the trained model (drift stage): real text, so plain == stream is a real check
        "trained_plain_equals_stream": {run: client(run, "tuned", "plain_equals_stream")
                                        for run in ("trained_merged", "trained_w4a16", "trained_kv_int8")},
        "trained_stream_chars": {run: client(run, "tuned", "stream_chars")
                                 for run in ("trained_merged", "trained_w4a16", "trained_kv_int8")},
        "start_phases_s": {log: phases(logs / log, t0) for key, t0 in facts.items()
                           if key.startswith("t0_") and (logs / (log := key.removeprefix("t0_"))).is_file()},
        "clients": clients,
    }
    result["drift"], result["drift_passed"] = drift_entries(logs / "drift" / "report.json")
    for name in ("kit_quant", "kit_quant_trained"):
        if (logs / f"{name}.json").is_file():
            result[name] = json.loads((logs / f"{name}.json").read_text(encoding="utf-8"))
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print("deploy.json: " + ", ".join(f"{k}={json.dumps(result[k])[:80]}" for k in KEYS))


def combine(out: Path, runs: list[str]) -> None:
    """Issue 18's keys from the first run that measured each (runs in the order given), every run's
    deploy.json kept whole under "runs"."""
    loaded = {name: json.loads(Path(path).read_text(encoding="utf-8"))
              for name, path in (r.split("=", 1) for r in runs)}
    result = {k: next((r[k] for r in loaded.values() if r.get(k) is not None), None) for k in KEYS}
    result["key_sources"] = {k: next((n for n, r in loaded.items() if r.get(k) is not None), None) for k in KEYS}
    result["runs"] = loaded
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print("deploy.json: " + ", ".join(f"{k}={json.dumps(result[k])[:80]}" for k in KEYS))


if __name__ == "__main__":
    if sys.argv[1] == "--combine":
        combine(Path(sys.argv[2]), sys.argv[3:])
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
