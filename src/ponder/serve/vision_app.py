"""The OpenAI-compatible chat API for a vision model (NVLM-D, -X, -H): a user message's `image_url` content part,
sent as a data URL, is the image; its text parts are the question. Answers are greedy, one request at a time (the
vision model runs its own decoding loop, not the batched engine); usage counts image tokens in the prompt."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from ponder.errors import BadImage
from ponder.serve.app import APIError, speak_openai
from ponder.serve.schemas import ChatRequest
from ponder.vision.model import VisionLanguageModel
from ponder.vision.tiling import open_image

BODY_BYTES = 32 << 20  # an image inline as base64


def create_vision_app(model: VisionLanguageModel, name: str, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="ponder (vision)", description="OpenAI-compatible chat API with images.")
    one_at_a_time = asyncio.Lock()

    speak_openai(app, BODY_BYTES, api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "ponder"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> Any:
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise APIError(400, "messages: there is no user message to answer", param="messages")
        urls = [url for m in body.messages for url in m.images()]
        if len(urls) > 1:
            raise APIError(400, "messages: one image a request (this model was trained on one)", param="messages")
        image = _decode(urls[0]) if urls else None
        async with one_at_a_time:
            answer = await asyncio.to_thread(model.generate, image, users[-1].text(), body.max_tokens or 64)
        usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.new_tokens,
                 "total_tokens": answer.prompt_tokens + answer.new_tokens,
                 "prompt_tokens_details": {"image_tokens": answer.image_tokens}}
        envelope = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}
        if not body.stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}
            return envelope | {"object": "chat.completion", "choices": [choice], "usage": usage}

        def chunk(delta: dict[str, str], finish: str | None) -> str:
            payload = envelope | {"object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(payload)}\n\n"

        events = [chunk({"role": "assistant", "content": answer.text}, None), chunk({}, "stop"), "data: [DONE]\n\n"]
        return StreamingResponse(iter(events), media_type="text/event-stream")

    return app


def _decode(url: str) -> Any:
    if not url.startswith("data:"):
        raise APIError(400, "image_url: send the image inline as a data URL (data:image/png;base64,...); this "
                            "server fetches nothing", param="messages")
    header, _, data = url.partition(",")
    try:
        raw = base64.b64decode(data, validate=True) if header.endswith(";base64") else data.encode()
        return open_image(raw)
    except (binascii.Error, ValueError):
        raise APIError(400, "image_url: the data URL is not valid base64", param="messages") from None
    except BadImage as e:
        raise APIError(400, f"image_url: {e}", param="messages") from None
