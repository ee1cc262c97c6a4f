"""The Generator protocol: all the search layer knows about producing tokens.

A `Sequence` is a value: a prompt, the tokens generated after it, their log-probabilities. Search
strategies keep, copy and fork sequences freely; a backend recognises the past a sequence shares
with earlier ones (by its token prefix) and reuses its cached keys and values instead of
recomputing them. Every call charges the generator's `Usage`.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.models.tokenizer import Tokenizer


@dataclass(frozen=True)
class Sequence:
    prompt: tuple[int, ...]
    tokens: tuple[int, ...] = ()  # generated after the prompt, over all calls so far
    logprobs: tuple[float, ...] = ()  # the model's log-probability of each generated token
    top_logprobs: tuple[dict[int, float], ...] = ()  # per generated token, when asked: the k likeliest ids
    values: tuple[float, ...] = ()  # per generated token, with a value head attached: its score of the state after it
    text: str = ""  # the generated tokens, decoded
    finish_reason: str | None = None  # why the last call ended: "stop" (end of generation or a stop string), "length"
    stop: str | None = None  # the stop string that ended the last call, if one did
    done: bool = False  # ended with an end-of-generation token: extending it changes nothing
    branch: tuple[int, ...] = ()  # where in a tree of samples and forks this sequence is: seeds its sampling

    @property
    def all_tokens(self) -> tuple[int, ...]:
        return self.prompt + self.tokens

    def fork(self, n: int) -> list[Sequence]:
        """n children that share this past and sample independently from here on."""
        if n < 1:
            raise ValueError(f"n must be at least 1 to fork, not {n}")
        return [replace(self, branch=self.branch + (i,)) for i in range(n)]

    def seed_for(self, base: int | None) -> int | None:
        """The seed of this sequence's next token: the same whatever else shares its batch. The prompt is
        part of it, so that one seed over many questions does not draw the same numbers for each (on a
        set of alike questions, sample i would take the same turn on every one of them)."""
        if base is None:
            return None
        key = hashlib.blake2b(array("q", self.prompt).tobytes(), digest_size=8)
        key.update(f"{base}/{self.branch}/{len(self.tokens)}".encode())
        return int.from_bytes(key.digest(), "little") >> 1


@dataclass
class Usage:
    prompt_tokens_computed: int = 0  # tokens run through the model to build context
    prompt_tokens_cached: int = 0  # context tokens whose keys and values were reused
    generated_tokens: int = 0

    def snapshot(self) -> Usage:
        return replace(self)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens_computed - other.prompt_tokens_computed,
                     self.prompt_tokens_cached - other.prompt_tokens_cached,
                     self.generated_tokens - other.generated_tokens)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    n_params: int  # for FLOPs accounting: about 2 x n_params per token
    context_length: int
    stop_ids: frozenset[int] = field(default_factory=frozenset)


class Generator(Protocol):
    info: ModelInfo
    usage: Usage

    def encode(self, text: str) -> list[int]: ...

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt for a chat, rendered with the model's template, ready for the assistant's turn."""
        ...

    def decode(self, tokens: tuple[int, ...]) -> str: ...

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams) -> list[list[Sequence]]:
        """n finished completions for each prompt (the prompt is computed once for all n)."""
        ...

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        """Grow every sequence until a stop string, end of generation or params.max_tokens more tokens."""
        ...


class SamplesByExtending:
    """`sample` and `encode` for a backend that grows sequences with `extend` and holds a ponder Tokenizer."""

    tokenizer: Tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.encode_chat(messages)

    def decode(self, tokens: tuple[int, ...]) -> str:
        return self.tokenizer.decode(tokens)

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams) -> list[list[Sequence]]:
        """n forks of each prompt, extended together."""
        if n < 1:
            raise BadParameter(f"n must be at least 1, not {n}")
        roots = [Sequence(tuple(p)) for p in prompts]  # seeds follow the prompt, not its place in the batch
        flat = self.extend([child for root in roots for child in root.fork(n)], params)  # type: ignore[attr-defined]
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]


def likeliest(logprobs: Iterable[tuple[int, float]], k: int) -> dict[int, float]:
    """The k likeliest (token id, log-probability) pairs, likeliest first."""
    return dict(sorted(logprobs, key=lambda item: -item[1])[:k])


def check_fits(info: ModelInfo, seq: Sequence, params: SamplingParams) -> None:
    """A ValueError unless the sequence plus max_tokens fits the context window."""
    if not seq.all_tokens:
        raise BadParameter("a sequence needs at least one prompt token")
    if len(seq.all_tokens) + params.max_tokens > info.context_length:
        raise BadParameter(
            f"max_tokens {params.max_tokens} after {len(seq.all_tokens)} tokens passes the context window "
            f"of {info.context_length}: lower max_tokens or shorten the prompt")
