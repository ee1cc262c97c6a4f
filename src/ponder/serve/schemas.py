"""The request bodies ponder's server accepts: OpenAI's fields, checked, plus how hard to think."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EFFORT_BUDGETS = {"low": 4, "medium": 8, "high": 16}  # reasoning_effort -> samples: auto with a policy, else majority


class Thinking(BaseModel):
    """ponder's own extra field: a search strategy, its budget and verifier ("auto" once a policy ships)."""

    strategy: str = "majority"  # or "auto": the server's compute-optimal policy picks, n is the budget
    n: int = Field(8, ge=1, le=64)
    verifier: str | None = None
    format: Literal["cot", "program", "mixed"] = "cot"  # program, mixed: programs run in the sandbox (--allow-code)
    return_candidates: bool = False
    return_tree: bool = False  # the search tree (tree strategies): what the chat page's thinking panel draws


class ImageURL(BaseModel):
    url: str  # a data URL (data:image/png;base64,...): the server reaches no network
    detail: str | None = None


class ContentPart(BaseModel):
    """OpenAI's content parts: text, or an image (for a vision model)."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content if part.type == "text")

    def images(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [part.image_url.url for part in self.content if part.type == "image_url" and part.image_url]


class Common(BaseModel):
    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    top_k: int = Field(0, ge=0)  # vLLM's extensions: 0 and 0.0 are off
    min_p: float = Field(0.0, ge=0.0, lt=1.0)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    ponder: Thinking | None = None

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


    def logprobs_asked(self) -> int | None:
        """How many likeliest tokens to report at each step; None: no log-probabilities at all."""
        return None


class ChatRequest(Common):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def logprobs_asked(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Common):
    prompt: str
    logprobs: int | None = Field(None, ge=0, le=20)
    return_tokens_as_token_ids: bool = False  # vLLM's: each token named "token_id:ID", exact for any client

    def logprobs_asked(self) -> int | None:
        return self.logprobs
