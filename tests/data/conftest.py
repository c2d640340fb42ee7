"""A real OpenAI-compatible server on 127.0.0.1 (random port) that misbehaves on purpose.

Faults are dealt in turn to new request keys (the hash kit sends the same way each time), on a key's
first attempt only: 429 with Retry-After, 500, a 200 with a broken JSON body, a stall past the client's
timeout. Finished answers are valid dialogues, dialogues in ```json fences with trailing commas, text
that is not JSON at all, or near copies of one another. Every request is logged for the assertions.
"""

import asyncio
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from kit.data.gen_prompts import request_key

CHARS = "山水风云花草树木日月星辰春夏秋冬东西南北吃喝睡走跑跳唱笑哭说看听想爱恨饭菜果酒茶米面瓜桃梨枣"


@dataclass
class ServerLog:
    api_key: str
    latency: tuple[float, float] = (0.15, 0.35)
    stall: float = 3.0  # seconds: longer than the client timeout the tests use
    retry_after: str = "0.1"  # the 429's Retry-After header
    attempts: Counter = field(default_factory=Counter)  # key -> requests received
    nth: dict = field(default_factory=dict)  # key -> order of its first arrival
    finished: Counter = field(default_factory=Counter)  # key -> well-formed 200 answers sent
    faults: Counter = field(default_factory=Counter)  # fault kind -> count
    order: list = field(default_factory=list)  # (key, outcome) in arrival order
    bad_auth: int = 0


FAULTS = (None, "429", None, "500", None, "broken body", None, "stall", None)


def fault_for(nth: int, attempt: int) -> str | None:
    """The fault for the nth distinct key (0-based) on its first attempt."""
    return FAULTS[nth % len(FAULTS)] if attempt == 1 else None


def answer_for(key: str, nth: int) -> str:
    h = nth + 5  # kinds dealt in turn too, offset from the faults
    rng = random.Random(key)
    if h % 10 == 0:
        return "抱歉，这个请求我写不了。"  # not JSON at all
    if h % 10 == 1:  # near copies of one dialogue: all but the first are near duplicates
        line = "俺老猪今天吃了十个大馒头，还想再吃十个，猴哥你可别拦着俺" + rng.choice("呀啊哩")
        return json.dumps({"dialogue": [{"role": "user", "content": "你今天吃了什么？"},
                                         {"role": "assistant", "content": line}]}, ensure_ascii=False)
    turns = []
    for _ in range(2):
        turns.append({"role": "user", "content": "".join(rng.choices(CHARS, k=10)) + "？"})
        turns.append({"role": "assistant", "content": "俺老猪" + "".join(rng.choices(CHARS, k=24)) + "。"})
    text = json.dumps({"dialogue": turns}, ensure_ascii=False, indent=1)
    if h % 10 == 2:  # fenced, with the trailing commas models like to leave
        return "好的：\n```json\n" + text.replace("\n ]", ",\n ]") + "\n```"
    return text


def make_app(log: ServerLog) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        if request.headers.get("authorization") != f"Bearer {log.api_key}":
            log.bad_auth += 1
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        key = request_key(body)
        log.attempts[key] += 1
        nth = log.nth.setdefault(key, len(log.nth))
        await asyncio.sleep(random.uniform(*log.latency))
        fault = fault_for(nth, log.attempts[key])
        log.order.append((key, fault or "ok"))
        if fault:
            log.faults[fault] += 1
        if fault == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429,
                                headers={"retry-after": log.retry_after})
        if fault == "500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "broken body":
            return PlainTextResponse('{"id": "x", "choices": [', media_type="application/json")
        if fault == "stall":
            await asyncio.sleep(log.stall)
            return JSONResponse({"error": {"message": "too late"}}, status_code=504)
        log.finished[key] += 1
        return {"id": "chatcmpl-" + key[:8], "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer_for(key, nth)}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}

    return app


@pytest.fixture
def openai_server():
    """(base_url, log) of a running test server; stopped after the test."""
    log = ServerLog(api_key="sk-test-" + "".join(random.choices("abcdef0123456789", k=24)))
    server = uvicorn.Server(uvicorn.Config(make_app(log), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1", log
    server.should_exit = True
    thread.join(timeout=10)
