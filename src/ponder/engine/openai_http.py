"""The OpenAI-compatible HTTP backend: vLLM, SGLang, llama.cpp's servers or ponder's own, over /v1/completions.

This is how a user with a GPU cluster scales out: many requests in flight at once (the server
batches them), `n` samples per request where the server honours it (the rest as single requests
with seeds of their own), and step-wise extension as the continuation of a raw prompt. Token ids
come back as ids where the server can say them (vLLM's `return_tokens_as_token_ids`), else by
tokenizing each returned piece locally. Stop strings: servers drop the matched string and do not
say whether it or the end of generation stopped them, so ponder cuts at stop strings itself
unless the server keeps them in the output (`include_stop_str_in_output`, vLLM).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from ponder.engine.protocol import ModelInfo, SamplesByExtending, Sequence, Usage, check_fits, likeliest
from ponder.engine.sampling import SamplingParams, find_stop
from ponder.errors import PonderError
from ponder.models.tokenizer import Tokenizer


class OpenAIHTTPEngine(SamplesByExtending):
    def __init__(self, base_url: str, model: str, tokenizer: Tokenizer, info: ModelInfo, api_key: str | None = None,
                 keeps_stop_strings: bool = False, parallel: int = 8, timeout: float = 600.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.keeps_stop_strings, self.parallel = keeps_stop_strings, parallel
        self.usage = Usage()

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        for seq in sequences:
            check_fits(self.info, seq, params)
        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(lambda s: s if s.done else self._extend_one(s, params), sequences))

    def _extend_one(self, seq: Sequence, params: SamplingParams) -> Sequence:
        body: dict[str, Any] = {
            "model": self.model, "prompt": self.tokenizer.decode(seq.all_tokens), "n": 1,
            "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "logprobs": max(1, params.top_logprobs), "return_tokens_as_token_ids": True,
            "seed": seq.seed_for(params.seed),
            # Neutral values where servers have opinions of their own (llama.cpp: top-k 40, min-p 0.05,
            # repeat penalty 1.1): the same settings mean the same sampling on every backend.
            "top_k": params.top_k, "min_p": params.min_p, "repeat_penalty": 1.0, "repetition_penalty": 1.0,
        }
        if params.stop and self.keeps_stop_strings:
            body |= {"stop": list(params.stop), "include_stop_str_in_output": True}
        choice, usage = self._post(body)
        ids, logprobs, pieces = self._tokens(choice)
        top = self._top_logprobs(choice, params.top_logprobs)
        stop = find_stop("".join(pieces), params.stop, 0)
        if stop:  # keep the tokens up to the one that completes the stop string
            text = ""
            for k, piece in enumerate(pieces):
                text += piece
                if stop in text:
                    ids, logprobs, top = ids[: k + 1], logprobs[: k + 1], top[: k + 1]
                    break
        tokens = seq.tokens + tuple(ids)
        done = stop is None and choice.get("finish_reason") == "stop"  # the model ended it
        self.usage.prompt_tokens_computed += usage.get("prompt_tokens", 0) - _cached(usage)
        self.usage.prompt_tokens_cached += _cached(usage)
        self.usage.generated_tokens += usage.get("completion_tokens", len(ids))
        return replace(seq, tokens=tokens, logprobs=seq.logprobs + tuple(logprobs), text=self.tokenizer.decode(tokens),
                       top_logprobs=seq.top_logprobs + tuple(top), stop=stop, done=done,
                       finish_reason="stop" if stop or done else "length")

    def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            response = self.client.post("/v1/completions", json=body)
        except httpx.HTTPError as e:
            raise PonderError(f"cannot reach {self.client.base_url} ({type(e).__name__}): is the server running?") \
                from None
        if response.status_code != 200:
            raise PonderError(f"{self.client.base_url} answered {response.status_code}: {response.text[:200]}")
        data = response.json()
        return data["choices"][0], data.get("usage") or {}

    def _tokens(self, choice: dict[str, Any]) -> tuple[list[int], list[float], list[str]]:
        """Token ids, their log-probabilities and text pieces of one choice."""
        logprobs = choice.get("logprobs") or {}
        names, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
        if names and all(name.startswith("token_id:") for name in names):
            ids = [int(name.removeprefix("token_id:")) for name in names]
            return ids, [float(v) for v in values], [self.tokenizer.decode([i]) for i in ids]
        pieces = [self.tokenizer.encode(name, special=False, add_bos=False) for name in names]
        if names and all(len(p) == 1 for p in pieces):  # each piece is one vocabulary entry
            return [p[0] for p in pieces], [float(v) for v in values], list(names)
        ids = self.tokenizer.encode(choice["text"], special=False, add_bos=False)
        return ids, [], [self.tokenizer.decode([i]) for i in ids]  # no trustworthy per-token logprobs


    def _top_logprobs(self, choice: dict[str, Any], k: int) -> list[dict[int, float]]:
        """The k likeliest tokens at each step, by id (pieces the tokenizer cannot map to one id are left out)."""
        if not k:
            return []
        steps = (choice.get("logprobs") or {}).get("top_logprobs") or []
        return [likeliest(((i, float(v)) for name, v in (step or {}).items() if (i := self._id(name)) is not None), k)
                for step in steps]

    def _id(self, name: str) -> int | None:
        if name.startswith("token_id:"):
            return int(name.removeprefix("token_id:"))
        ids = self.tokenizer.encode(name, special=False, add_bos=False)
        return ids[0] if len(ids) == 1 else None


def _cached(usage: dict[str, Any]) -> int:
    return int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
