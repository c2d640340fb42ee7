"""The embedded OpenAI-compatible server: /v1/chat/completions (plain and SSE), /v1/completions (plain,
with echo and logprobs, which `kit eval` scores perplexity through), /v1/models, /health.

One process serves several models by name (e.g. "base" and "tuned"); clients such as the official
`openai` package, the compare page and `kit data generate` talk to it like to LMDeploy's api_server.
"""

import asyncio
import json
import secrets
import threading
import time
import uuid
from typing import Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers

from kit.hf_models import decode_whole_chars
from kit.serve.hf_engine import ContextOverflow, Delta, HFChatModel, SamplingParams

SEED_MAX = 2**64 - 1  # torch.manual_seed takes a 64-bit seed; a larger one must not reach the engine


class ChatRequest(BaseModel):
    model: str
    messages: list[dict]
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)  # not in OpenAI's schema; LMDeploy accepts it too
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    n: int = Field(default=1, ge=1, le=1)


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int = Field(default=16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)


def _error(status: int, message: str, kind: str = "invalid_request_error",
           param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status)


def _invalid(errors: list[dict]) -> JSONResponse:
    """A rejected request body as OpenAI's 400 error naming the field (FastAPI's own 422 {"detail": …}
    leaves the openai client saying only "Error code: 422")."""
    first = errors[0]
    if first["type"] == "json_invalid":  # loc is ("body", offset of the error)
        why = first.get("ctx", {}).get("error", first["msg"])
        return _error(400, f"the request body is not valid JSON: {why} at character {first['loc'][-1]}")
    param = _param(first["loc"])
    # A union field (stop) fails once per member: say every way it could have been right.
    reasons = dict.fromkeys(e["msg"] for e in errors if _param(e["loc"]) == param)
    got = "" if first["type"] == "missing" else f" (got {repr(first['input'])[:80]})"
    return _error(400, f"{param or 'request body'}: {' or '.join(reasons)}{got}", param=param)


def _param(loc: tuple) -> str | None:
    """("body", "messages", 0) → "messages[0]"; string parts after the field name are pydantic's union
    member tags ("str", "list[str]"), not fields."""
    if len(loc) < 2:
        return None
    return str(loc[1]) + "".join(f"[{p}]" for p in loc[2:] if isinstance(p, int))


def _params(req: ChatRequest | CompletionRequest) -> SamplingParams:
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    max_tokens = req.max_tokens if isinstance(req, CompletionRequest) else (
        req.max_completion_tokens or req.max_tokens or 256)
    return SamplingParams(max_tokens=max_tokens,
                          temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, stop=stop,
                          seed=req.seed)


def _message_problem(messages: list[dict]) -> tuple[str, str] | None:
    """(param, problem) for the first unusable message or an empty list; None if all are fine."""
    if not messages:
        return "messages", "must not be empty"
    for i, m in enumerate(messages):
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            return f"messages[{i}]", "need role system|user|assistant and string content"
    return None


async def _deltas(produce: Callable[[threading.Event], Iterator[Delta]], request: Request):
    """Run a blocking generator of deltas in a thread and hand them to the event loop. Generation is
    cancelled when this generator ends early (its reader closed or cancelled it, e.g. at shutdown) and
    when the client disconnects, streamed or not."""
    loop, q, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

    def send(item) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, item)
        except RuntimeError:  # the loop is closed (the server shut down): nobody is reading
            pass

    def pump():
        try:
            for d in produce(cancelled):
                send(d)
        except BaseException as e:
            send(e)
        finally:
            send(None)

    async def watch():
        while not await request.is_disconnected():
            await asyncio.sleep(0.5)
        cancelled.set()

    threading.Thread(target=pump, daemon=True).start()
    watcher = asyncio.create_task(watch())
    try:
        while (item := await q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        watcher.cancel()


class RequireKey:
    """`Authorization: Bearer KEY` on /v1/*, as plain ASGI middleware: Starlette's BaseHTTPMiddleware
    (`@app.middleware`) hides a client's disconnect from the endpoints, which then generate for nobody."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = Headers(scope=scope).get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given.encode(), self.key):
                return await _error(401, "invalid or missing API key", "authentication_error")(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(models: dict[str, HFChatModel], api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="kit embedded server", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return _invalid(exc.errors())

    if api_key:
        app.add_middleware(RequireKey, api_key=api_key)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(models)}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "kit",
             "root": str(m.path), "max_model_len": m.context} for name, m in models.items()]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        model = models.get(req.model)
        if model is None:
            return _error(404, f"model '{req.model}' not found; served: {', '.join(models)}", param="model")
        if problem := _message_problem(req.messages):
            return _error(400, f"{problem[0]}: {problem[1]}", param=problem[0])
        params, cid = _params(req), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        head = {"id": cid, "created": int(time.time()), "model": req.model}
        gen = _deltas(lambda cancelled: model.stream(req.messages, params, cancelled), request)
        try:
            first = await anext(gen)  # a context overflow surfaces here, before any byte is sent
        except ContextOverflow as e:
            return _error(400, e.message)
        if not req.stream:
            parts, last = [first], first
            async for d in gen:
                parts.append(d)
                last = d
            return {**head, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": last.finish_reason,
                "message": {"role": "assistant", "content": "".join(p.text for p in parts)}}],
                "usage": _usage(last)}

        async def events():
            def chunk(delta: dict, finish: str | None = None, **extra) -> str:
                body = {**head, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
                return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

            try:
                yield chunk({"role": "assistant", "content": ""})
                d: Delta | None = first
                while d is not None:
                    if d.finish_reason:
                        yield chunk({}, d.finish_reason, usage=_usage(d))
                    elif d.text:
                        yield chunk({"content": d.text})
                    d = await anext(gen, None)
                yield "data: [DONE]\n\n"
            finally:
                await gen.aclose()  # client went away (or we are done): stop generating

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/completions")
    async def complete(req: CompletionRequest, request: Request):
        """Raw-text completion, as the model sees it (no chat template, BOS added by the tokenizer)."""
        model = models.get(req.model)
        if model is None:
            return _error(404, f"model '{req.model}' not found; served: {', '.join(models)}", param="model")
        if req.stream:
            return _error(400, "stream is not supported on /v1/completions here; use /v1/chat/completions",
                          param="stream")
        ids = model.tokenizer(req.prompt).input_ids
        if len(ids) + req.max_tokens > model.context:
            return _error(400, f"prompt ({len(ids)} tokens) + max_tokens ({req.max_tokens}) exceeds the "
                               f"context window of '{req.model}' ({model.context} tokens)")
        params, new, last = _params(req), (), Delta("", "length", len(ids), 0)
        if req.max_tokens:
            async for d in _deltas(lambda cancelled: model.stream_ids(ids, params, cancelled), request):
                last = d
            new = last.token_ids
        text = decode_whole_chars(model.tokenizer, list(new))
        choice = {"index": 0, "text": (req.prompt if req.echo else "") + text,
                  "finish_reason": last.finish_reason, "logprobs": None}
        if req.logprobs is not None:
            scored = await asyncio.to_thread(model.score, [*ids, *new], req.logprobs)
            choice["logprobs"] = _logprobs(model, ids, list(new), scored, req.echo)
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": req.model, "choices": [choice], "usage": _usage(last)}

    return app


def _logprobs(model: HFChatModel, ids: list[int], new: list[int], scored: list, echo: bool) -> dict:
    """OpenAI's legacy logprobs object. text_offset counts characters from the start of the prompt
    (so the completion's first token sits at len(prompt)); the BOS the tokenizer added is not text."""
    all_ids = [*ids, *new]
    lead = int(bool(ids) and ids[0] == model.tokenizer.bos_token_id)
    first = lead if echo else len(ids)
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for i in range(first, len(all_ids)):
        out["text_offset"].append(len(model.tokenizer.decode(all_ids[lead:i])))
        out["tokens"].append(model.tokenizer.decode(all_ids[i:i + 1]))
        out["token_logprobs"].append(scored[i][0])
        out["top_logprobs"].append(scored[i][1])
    return out


def _usage(last: Delta) -> dict:
    return {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens,
            "total_tokens": last.prompt_tokens + last.completion_tokens}
