"""The OpenAI-compatible API: chat and text completions (streamed or not), models, health, metrics.

Every request's sequences join one shared engine (`Scheduler`: continuous batching across
requests). A request may ask to think harder: `reasoning_effort` (low, medium, high: a budget of 4,
8, 16 samples, spent by the allocation policy where the server has one, else on majority voting) or
ponder's own `ponder` field (strategy, n, verifier; "auto" where there is a policy); its usage
then reports the search's real spend, FLOPs included. Log-probabilities come back as OpenAI's APIs
shape them, token ids too where asked (vLLM's `return_tokens_as_token_ids`), so that ponder's own
HTTP backend can drive this server exactly. Requests beyond the queue bound get 429 with
Retry-After; a client that goes away has its work cancelled; errors come back in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ponder.engine.protocol import Sequence
from ponder.engine.sampling import SamplingParams
from ponder.engine.scheduler import Scheduler
from ponder.errors import PonderError
from ponder.search.auto import Policy
from ponder.serve.page import chat_page
from ponder.serve.schemas import EFFORT_BUDGETS, ChatRequest, Common, CompletionRequest, Thinking

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Limits:
    """What one request may ask for: the operator's, beyond the API's own ranges."""

    max_tokens: int = 4096
    n: int = 16
    think_n: int = 64  # samples or beams of a think-harder request
    body_bytes: int = 1 << 20
    code_verifier: bool = False  # runs model-written code: off unless the operator turns it on


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code, self.headers = status, kind, param, code, headers


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def speak_openai(app: FastAPI, body_bytes: int, api_key: str | None,
                 count: Callable[[int], None] = lambda status: None) -> None:
    """Errors in OpenAI's shape (APIError, invalid bodies), a body size limit and the API key, for any of ponder's
    apps; `count` hears each error's status (the metrics)."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        count(e.status)
        return JSONResponse(error_body(str(e), e.kind, e.param, e.code), e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        count(400)
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(x) for x in first["loc"][1:]) or None
        return JSONResponse(error_body(f"{param or 'body'}: {first['msg']}", "invalid_request_error", param), 400)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if int(request.headers.get("content-length") or 0) > body_bytes:
            count(413)
            return JSONResponse(error_body(f"the request body is over {body_bytes} bytes",
                                           "invalid_request_error"), 413)
        if api_key and request.url.path.startswith("/v1/") and \
                request.headers.get("authorization") != f"Bearer {api_key}":
            count(401)
            return JSONResponse(error_body("a valid API key is needed (Authorization: Bearer KEY)",
                                           "authentication_error"), 401)
        return await call_next(request)


def create_app(scheduler: Scheduler, model: str, api_key: str | None = None, max_queue: int = 64,
               timeout: float = 300.0, limits: Limits = Limits(), policy: Policy | None = None) -> FastAPI:
    """`timeout`: seconds a request may take before it is cancelled and answered 504; `policy`: what
    `"strategy": "auto"` allocates by, and then `reasoning_effort` too (low, medium, high: auto at a
    budget of 4, 8, 16 samples; without a policy, majority of 4, 8, 16)."""
    app = FastAPI(title="ponder", description="OpenAI-compatible API; thinks as hard as each request asks.")
    metrics: Counter[str] = Counter()
    in_flight = {"requests": 0}

    speak_openai(app, limits.body_bytes, api_key, count=lambda status: metrics.update([f"errors_{status}"]))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return chat_page(model)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model, "queue": scheduler.load}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "ponder"}]}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        lines = [f"ponder_{name}_total {value}" for name, value in sorted(metrics.items())]
        lines += [f"ponder_requests_in_flight {in_flight['requests']}", f"ponder_engine_jobs {scheduler.load}"]
        return "\n".join(lines) + "\n"

    async def admitted(body: Common, request: Request, prompt: list[int], chat: bool) -> Any:
        if body.model != model:
            raise APIError(404, f"model {body.model!r} is not served here: use {model!r}", code="model_not_found",
                           param="model")
        if in_flight["requests"] >= max_queue:
            raise APIError(429, "too many requests in flight: retry shortly", "rate_limit_error",
                           headers={"Retry-After": "1"})
        _within(body, limits)
        in_flight["requests"] += 1
        metrics["requests"] += 1
        try:
            effort = "auto" if policy is not None else "majority"  # with a policy, effort is a budget for it
            thinking = body.ponder or (Thinking(strategy=effort, n=EFFORT_BUDGETS[body.reasoning_effort])
                                       if body.reasoning_effort else None)
            if thinking is not None:
                return await think(body, thinking, prompt, chat)
            params = _params(body)
            if body.stream and body.logprobs_asked() is not None:
                raise APIError(400, "logprobs are not streamed here: ask for them without stream", param="logprobs")
            if body.stream:  # counted again while it streams
                return StreamingResponse(stream(body, params, prompt, request, chat), media_type="text/event-stream")
            job = _submit(scheduler, Sequence(tuple(prompt)).fork(body.n), params)
            seqs = await _wait(scheduler, job, request, timeout)
            metrics["generated_tokens"] += sum(len(s.tokens) for s in seqs)
            return _response(body, seqs, len(prompt), chat, scheduler.decode)
        finally:
            in_flight["requests"] -= 1

    async def think(body: Common, thinking: Thinking, prompt: list[int], chat: bool) -> dict[str, Any]:
        from ponder.search import solve
        from ponder.tasks.jsonl import JsonlTask
        from ponder.tasks.program import with_format

        messages = [m.model_dump() for m in body.messages] if isinstance(body, ChatRequest) else \
            [{"role": "user", "content": body.prompt}]  # type: ignore[attr-defined]
        task = with_format(JsonlTask("request", tuple(messages), ""), thinking.format)
        settings: dict[str, Any] = {}
        if thinking.strategy == "auto" and policy is not None:
            settings["policy"] = policy  # else the policy shipped for the model, if one does
        try:
            result = await run_in_threadpool(
                solve, scheduler, task, thinking.strategy, thinking.n, thinking.verifier,
                temperature=body.temperature if body.temperature > 0 else None,
                max_tokens=body.max_tokens or DEFAULT_MAX_TOKENS, seed=body.seed, **settings)
        except PonderError as e:
            raise APIError(400, str(e), param="ponder") from None
        best = next((c for c in result.candidates if c.answer == result.answer), result.candidates[0]) \
            if result.candidates else None
        text = best.text if best else ""
        spend = result.spend
        out = _envelope(body, chat, [_choice(chat, 0, text, "stop")],
                        {"prompt_tokens": spend.prompt_tokens_computed + spend.prompt_tokens_cached,
                         "completion_tokens": spend.generated_tokens,
                         "total_tokens": spend.prompt_tokens_computed + spend.prompt_tokens_cached
                         + spend.generated_tokens,
                         "verifier_tokens": spend.verifier_tokens, "flops": spend.flops})
        out["ponder"] = {"strategy": result.strategy, "settings": result.settings, "answer": result.answer,
                         "spend": spend.to_dict()}
        if thinking.return_candidates:
            out["ponder"]["candidates"] = [c.to_dict() for c in result.candidates]
        if thinking.return_tree:
            out["ponder"]["tree"] = None if result.tree is None else [n.to_dict() for n in result.tree]
        return out

    async def stream(body: Common, params: SamplingParams, prompt: list[int], request: Request, chat: bool) -> Any:
        in_flight["requests"] += 1
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        sent = [0] * body.n
        hold = max((len(s) for s in params.stop), default=1) - 1  # a stop string may still be forming

        def on_token(index: int, seq: Sequence) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (index, seq))

        job = _submit(scheduler, Sequence(tuple(prompt)).fork(body.n), params, on_token)
        waiter = asyncio.ensure_future(run_in_threadpool(scheduler.wait, job, timeout))
        try:
            if chat:
                for i in range(body.n):
                    yield _sse(_chunk(body, chat, i, {"role": "assistant", "content": ""}, None))
            while not (waiter.done() and queue.empty()):
                try:
                    index, seq = await asyncio.wait_for(queue.get(), 0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        scheduler.cancel(job)
                        return
                    continue
                text = _visible(seq)
                ready = len(text) - hold
                if ready > sent[index]:
                    yield _sse(_chunk(body, chat, index, text[sent[index]:ready], None))
                    sent[index] = ready
            for index, seq in enumerate(await waiter):
                text = _visible(seq)
                if len(text) > sent[index]:
                    yield _sse(_chunk(body, chat, index, text[sent[index]:], None))
                yield _sse(_chunk(body, chat, index, "", _finish(seq)))
                metrics["generated_tokens"] += len(seq.tokens)
            yield "data: [DONE]\n\n"
        except PonderError as e:
            yield _sse(error_body(str(e), "server_error"))
        finally:
            in_flight["requests"] -= 1
            if not waiter.done():
                scheduler.cancel(job)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        if any(m.images() for m in body.messages):
            raise APIError(400, f"{model} is a text-only model: serve a vision model to send images "
                                "(ponder serve nvlm-d-smollm2)", param="messages")
        prompt = scheduler.encode_chat([{"role": m.role, "content": m.text()} for m in body.messages])
        return await admitted(body, request, prompt, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        if not body.prompt:
            raise APIError(400, "prompt: must not be empty", param="prompt")
        return await admitted(body, request, scheduler.encode(body.prompt), chat=False)

    return app


def _within(body: Common, limits: Limits) -> None:
    if body.max_tokens is not None and body.max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens: at most {limits.max_tokens} here", param="max_tokens")
    if body.n > limits.n:
        raise APIError(400, f"n: at most {limits.n} here", param="n")
    if body.ponder is not None:
        if body.ponder.n > limits.think_n:
            raise APIError(400, f"ponder.n: at most {limits.think_n} here", param="ponder.n")
        if body.ponder.verifier == "code" and not limits.code_verifier:
            raise APIError(400, "ponder.verifier: code execution is off on this server", param="ponder.verifier")
        if body.ponder.format != "cot" and not limits.code_verifier:
            raise APIError(400, "ponder.format: program answers run code, which is off on this server "
                           "(ponder serve --allow-code)", param="ponder.format")


def _params(body: Common) -> SamplingParams:
    try:
        return SamplingParams(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
                              max_tokens=body.max_tokens or DEFAULT_MAX_TOKENS, seed=body.seed, stop=body.stops(),
                              top_logprobs=body.logprobs_asked() or 0)
    except ValueError as e:
        raise APIError(400, str(e)) from None


def _submit(scheduler: Scheduler, sequences: list[Sequence], params: SamplingParams, on_token: Any = None) -> Any:
    try:
        return scheduler.submit(sequences, params, on_token)
    except PonderError as e:
        raise APIError(400 if isinstance(e, ValueError) else 503, str(e)) from None


async def _wait(scheduler: Scheduler, job: Any, request: Request, timeout: float) -> list[Sequence]:
    waiter = asyncio.ensure_future(run_in_threadpool(scheduler.wait, job, timeout))
    while not waiter.done():
        await asyncio.wait({waiter}, timeout=0.5)
        if not waiter.done() and await request.is_disconnected():
            scheduler.cancel(job)
    try:
        return waiter.result()
    except TimeoutError as e:
        raise APIError(504, str(e), "timeout") from None
    except PonderError as e:
        raise APIError(503, str(e), "server_error") from None


def _visible(seq: Sequence) -> str:
    """The text a client sees: up to (not including) the stop string that ended it."""
    if seq.stop is not None:
        return seq.text[: seq.text.find(seq.stop)]
    return seq.text


def _finish(seq: Sequence) -> str:
    return "length" if seq.finish_reason == "length" else "stop"


def _choice(chat: bool, index: int, text: str, finish: str, logprobs: Any = None) -> dict[str, Any]:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                "logprobs": logprobs}
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}


def _logprobs(body: Common, seq: Sequence, decode: Callable[[tuple[int, ...]], str]) -> Any:
    """The chosen tokens' log-probabilities (and the likeliest tokens' where asked) for the visible text:
    a token that only spells the stop string is left out, as its text is."""
    top = body.logprobs_asked()
    if top is None:
        return None
    as_ids = getattr(body, "return_tokens_as_token_ids", False)

    def name(token: int) -> str:
        return f"token_id:{token}" if as_ids else decode((token,))

    visible, kept, offset = len(_visible(seq)), [], 0
    for k, token in enumerate(seq.tokens):
        if seq.stop is not None and offset >= visible:
            break  # the rest only spells the stop string
        kept.append((k, offset))
        offset += len(decode((token,)))
    tops = [sorted(seq.top_logprobs[k].items(), key=lambda kv: -kv[1])[:top] if top else [] for k, _ in kept]
    if isinstance(body, ChatRequest):
        def entry(token: int, logprob: float) -> dict[str, Any]:
            text = name(token)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}
        return {"content": [entry(seq.tokens[k], seq.logprobs[k]) | {"top_logprobs": [entry(i, v) for i, v in best]}
                            for (k, _), best in zip(kept, tops)]}
    return {"tokens": [name(seq.tokens[k]) for k, _ in kept], "token_logprobs": [seq.logprobs[k] for k, _ in kept],
            "top_logprobs": [{name(i): v for i, v in best} for best in tops] if top else None,
            "text_offset": [offset for _, offset in kept]}


def _envelope(body: Common, chat: bool, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": body.model, "choices": choices, "usage": usage}


def _response(body: Common, seqs: list[Sequence], prompt: int, chat: bool,
              decode: Callable[[tuple[int, ...]], str]) -> dict[str, Any]:
    generated = sum(len(s.tokens) for s in seqs)
    choices = [_choice(chat, i, _visible(s), _finish(s), _logprobs(body, s, decode)) for i, s in enumerate(seqs)]
    return _envelope(body, chat, choices,
                     {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated})


def _chunk(body: Common, chat: bool, index: int, delta: Any, finish: str | None) -> dict[str, Any]:
    if chat:
        content = delta if isinstance(delta, dict) else {"content": delta}
        choice = {"index": index, "delta": content if finish is None else {}, "finish_reason": finish}
        return {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.model, "choices": [choice]}
    return {"id": "cmpl-stream", "object": "text_completion", "created": int(time.time()), "model": body.model,
            "choices": [{"index": index, "text": delta if isinstance(delta, str) else "", "finish_reason": finish}]}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, max_queue: int = 64,
          backend: str = "native", limits: Limits = Limits(), timeout: float = 300.0, policy: Policy | None = None,
          announce: Any = print) -> None:
    """Load the model, start the engine's thread, and serve until interrupted; in-flight work is finished."""
    import uvicorn

    from ponder.engine.backends import open_generator
    from ponder.search.auto import POLICIES, shipped_policy
    from ponder.vision.checkpoint import vision_folder

    if (folder := vision_folder(model)) is not None:  # a vision model answers on its own, one request at a time
        from ponder.serve.vision_app import create_vision_app
        from ponder.vision.checkpoint import load_vision

        announce(f"ponder serves the vision model {model} at http://{host}:{port}/v1 (chat completions with "
                 "image_url content parts as data URLs)")
        uvicorn.run(create_vision_app(load_vision(folder), model, api_key), host=host, port=port,
                    log_level="warning")
        return
    if policy is None and (POLICIES / f"{model}.json").is_file():
        policy = shipped_policy(model)
    scheduler = Scheduler(open_generator(model, backend))  # type: ignore[arg-type]
    app = create_app(scheduler, model, api_key, max_queue, timeout, limits, policy)
    announce(f"ponder serves {model} at http://{host}:{port}/v1 (OpenAI-compatible). Try:\n"
             f"  curl http://{host}:{port}/v1/chat/completions -H 'Content-Type: application/json'"
             + (" -H 'Authorization: Bearer KEY'" if api_key else "")
             + f" -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        scheduler.close()
