"""The request bodies ponder's server accepts: OpenAI's fields, checked, plus how hard to think."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EFFORT_BUDGETS = {"low": 4, "medium": 8, "high": 16}  # reasoning_effort -> samples, majority vote


class Thinking(BaseModel):
    """ponder's own extra field: a search strategy, its budget and verifier ("auto" once a policy ships)."""

    strategy: str = "majority"
    n: int = Field(8, ge=1, le=64)
    verifier: str | None = None
    return_candidates: bool = False


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Common(BaseModel):
    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    ponder: Thinking | None = None

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatRequest(Common):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Common):
    prompt: str
