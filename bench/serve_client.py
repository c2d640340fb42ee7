"""Check OpenAI-compatible endpoints with the official `openai` client and time them.

  python bench/serve_client.py URL=MODEL [URL=MODEL…] [--concurrency 32] [--max-tokens 128] [--repeat N] [--raw FILE]
For each model: a first request (timed apart: it may pay for kernel compilation), a plain and a
streamed answer, the persona check (a request without a system prompt
must cost as many prompt tokens as one with the persona's), and N concurrent streams (0: none).
Prints JSON; --raw appends, per model, the plain answer and every chunk of the stream as received.
"""

import argparse
import asyncio
import json
import statistics
import time

import openai

PERSONA_PROBE = "你是谁？"


def check(url: str, model: str, system: str | None, max_tokens: int, raw: str | None = None,
          repeat: int = 1) -> dict:
    c = openai.OpenAI(base_url=url, api_key="none", timeout=300, max_retries=0)
    user = [{"role": "user", "content": PERSONA_PROBE}]
    # The first request after start pays for kernels the engine compiles on first use (seen: 4x
    # slower for W4A16); it is timed on its own and the single-stream speed is the second one's.
    t = time.monotonic()
    cold = c.chat.completions.create(model=model, messages=user, max_tokens=max_tokens, temperature=0)
    cold_s = time.monotonic() - t
    times = []
    for _ in range(repeat):  # one 128-token request varies by a third between runs: the median of N
        t = time.monotonic()
        plain = c.chat.completions.create(model=model, messages=user, max_tokens=max_tokens, temperature=0)
        times.append(time.monotonic() - t)
    plain_s = statistics.median(times)
    t, first, parts, chunks = time.monotonic(), None, [], []
    for ch in c.chat.completions.create(model=model, messages=user, max_tokens=max_tokens, temperature=0,
                                        stream=True):
        chunks.append(ch.model_dump())
        if ch.choices and ch.choices[0].delta.content:
            first = first or time.monotonic() - t
            parts.append(ch.choices[0].delta.content)
    if raw:  # what the server sent, to see why a stream differs from the plain answer
        with open(raw, "a", encoding="utf-8") as f:
            f.write(json.dumps({"url": url, "model": model, "plain": plain.model_dump(), "stream": chunks},
                               ensure_ascii=False) + "\n")
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    result = {"model": model, "url": url, "first_request_s": round(cold_s, 3),
              "tok_per_s_first_request": round(cold.usage.completion_tokens / cold_s, 1),
              "first_equals_plain": cold.choices[0].message.content == plain.choices[0].message.content,
              "plain_s": round(plain_s, 3),
              "completion_tokens": plain.usage.completion_tokens, "prompt_tokens": plain.usage.prompt_tokens,
              "tok_per_s_single": round(plain.usage.completion_tokens / plain_s, 1),
              "finish_reason": plain.choices[0].finish_reason, "stream_chunks": len(parts),
              "stream_events": len(chunks), "stream_finish_reason": finishes[-1] if finishes else None,
              "plain_chars": len(plain.choices[0].message.content or ""), "stream_chars": len("".join(parts)),
              "stream_first_token_s": round(first, 3) if first else None,
              "plain_equals_stream": "".join(parts) == (plain.choices[0].message.content or "")}
    if system:
        explicit = c.chat.completions.create(model=model, messages=[{"role": "system", "content": system}] + user,
                                             max_tokens=1, temperature=0)
        result["persona_default_applied"] = explicit.usage.prompt_tokens == plain.usage.prompt_tokens
    return result


async def concurrent(url: str, model: str, n: int, max_tokens: int, system: str | None = None,
                     ignore_eos: bool = False) -> dict:
    c = openai.AsyncOpenAI(base_url=url, api_key="none", timeout=600, max_retries=0)

    async def one(i):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": f"问题{i}"}]
        # ignore_eos (LMDeploy's extension): every stream makes max_tokens, so runs compare like for like
        stream = await c.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                 temperature=0.8, stream=True, stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True} if ignore_eos else None)
        tokens = 0
        async for ch in stream:
            if ch.usage:
                tokens = ch.usage.completion_tokens
        return tokens

    t = time.monotonic()
    tokens = await asyncio.gather(*(one(i) for i in range(n)))
    s = time.monotonic() - t
    await c.close()  # inside this event loop: asyncio.run closes it when we return
    return {"concurrent_streams": n, "concurrent_s": round(s, 2), "concurrent_tokens": sum(tokens),
            "concurrent_tok_per_s": round(sum(tokens) / s, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("targets", nargs="+", help="URL=MODEL")
    p.add_argument("--system", default=None, help="persona system prompt to compare against")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeat", type=int, default=1, help="time the single stream and the N streams this "
                   "many times (after the first request) and report the medians")
    p.add_argument("--raw", default=None, help="append the plain answer and the stream's chunks here (JSONL)")
    a = p.parse_args()
    for target in a.targets:
        url, model = target.rsplit("=", 1)
        r = check(url, model, a.system, a.max_tokens, a.raw, a.repeat)
        if a.concurrency:
            runs = [asyncio.run(concurrent(url, model, a.concurrency, a.max_tokens)) for _ in range(a.repeat)]
            r |= runs[-1] | {"concurrent_tok_per_s": statistics.median(x["concurrent_tok_per_s"] for x in runs),
                             "concurrent_tok_per_s_runs": [x["concurrent_tok_per_s"] for x in runs]}
        print(json.dumps(r, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
