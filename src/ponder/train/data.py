"""Training rows from JSONL, in the formats users already have, as token ids with loss masks.

SFT rows are `{"messages": [...]}` (an assistant message marked `"train": false` is context, not learned: the wrong
attempts before a revision); preference rows are TRL's conversational format, `{"prompt": [...messages],
"chosen": [...assistant messages], "rejected": [...]}`, with plain strings accepted for any of the three. A
conversation is rendered once by the model's own chat template and tokenized once; each token is then labelled by
where its characters fall: the prompt, an assistant message's content, or the template's formatting around it
(the end-of-turn marker). SFT learns the content and the end of turn (so the model learns to stop); DPO, as in
Llama 3, compares only the content: formatting tokens are masked out of both chosen and rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.errors import BadParameter
from ponder.jobs import read_jsonl
from ponder.models.tokenizer import Tokenizer

PROMPT, CONTENT, FORMAT = 0, 1, 2  # what a token is part of
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Tokenized:
    """One conversation: token ids and, per token, PROMPT, CONTENT or FORMAT."""

    ids: list[int]
    parts: list[int]

    def mask(self, *parts: int) -> list[bool]:
        return [p in parts for p in self.parts]


@dataclass(frozen=True)
class Pair:
    chosen: Tokenized
    rejected: Tokenized


@dataclass
class Skipped:
    """Rows left out, by reason: said to the user with their count, never dropped silently."""

    reasons: dict[str, list[int]] = field(default_factory=dict)  # reason -> line numbers

    def add(self, reason: str, line: int) -> None:
        self.reasons.setdefault(reason, []).append(line)

    def summary(self) -> str | None:
        if not self.reasons:
            return None
        return "; ".join(f"{len(lines)} {reason} (line {', '.join(map(str, lines[:5]))}"
                         f"{', ...' if len(lines) > 5 else ''})" for reason, lines in self.reasons.items())


def _messages(value: Any, role: str, where: str) -> list[dict[str, str]]:
    """A list of messages, or a plain string as one message of `role`."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise BadParameter(f"{where}: expected a string or a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadParameter(f"{where}: each message needs a role ({', '.join(ROLES)}) and string content, "
                               f"not {json.dumps(m)[:80]}")
        out.append({"role": m["role"], "content": m["content"]} | ({"train": False} if m.get("train") is False else {}))
    return out


def tokenize(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> Tokenized:
    """The conversation rendered by the chat template, tokenized once, each token labelled by its characters."""
    text = tokenizer.render_chat(messages, add_generation_prompt=False)
    spans: list[tuple[int, int, int]] = []  # (start, end, part) of each assistant message's content and its end
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or m.get("train") is False:  # a message marked "train": false is context
            continue
        before = tokenizer.render_chat(messages[:i], add_generation_prompt=True)
        through = tokenizer.render_chat(messages[: i + 1], add_generation_prompt=False)
        start = len(before)
        if not text.startswith(before) or not through.startswith(before + m["content"]) \
                or not text.startswith(through):
            raise BadParameter("this model's chat template does not render a conversation as the sum of its turns, "
                               "so assistant tokens cannot be told apart: train with another model")
        spans += [(start, start + len(m["content"]), CONTENT), (start + len(m["content"]), len(through), FORMAT)]
    tokenizer.backend.encode_special_tokens = False  # as Tokenizer.encode(special=True)
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    ids, parts = list(encoding.ids), []
    for begin, end in encoding.offsets:
        part = next((p for s, e, p in spans if s <= begin < e or (begin == end == s and e > s)), PROMPT)
        parts.append(part)
    if tokenizer.add_bos and tokenizer.bos_id is not None and (not ids or ids[0] != tokenizer.bos_id):
        ids, parts = [tokenizer.bos_id, *ids], [PROMPT, *parts]
    return Tokenized(ids, parts)


def load_sft(path: Path, tokenizer: Tokenizer, max_length: int) -> tuple[list[Tokenized], Skipped]:
    """SFT rows: {"messages": [...]} with at least one assistant message (the loss is on those)."""
    examples, skipped = [], Skipped()
    for number, row in read_jsonl(path):
        where = f"{path}, line {number}"
        if "messages" not in row:
            raise BadParameter(f"{where}: an SFT row is {{\"messages\": [...]}}; this one has {sorted(row)}")
        messages = _messages(row["messages"], "user", where)
        if not any(m["role"] == "assistant" and m["content"].strip() and m.get("train") is not False
                   for m in messages):
            skipped.add("rows with no assistant answer", number)
            continue
        example = tokenize(tokenizer, messages)
        if len(example.ids) > max_length:
            skipped.add(f"rows longer than {max_length} tokens", number)
            continue
        examples.append(example)
    return examples, skipped


def load_pairs(path: Path, tokenizer: Tokenizer, max_length: int) -> tuple[list[Pair], Skipped]:
    """Preference rows: {"prompt", "chosen", "rejected"}, conversations or plain strings."""
    pairs, skipped = [], Skipped()
    for number, row in read_jsonl(path):
        where = f"{path}, line {number}"
        if missing := [k for k in ("prompt", "chosen", "rejected") if k not in row]:
            raise BadParameter(f"{where}: a preference row needs prompt, chosen and rejected; missing "
                               f"{', '.join(missing)}")
        prompt = _messages(row["prompt"], "user", f"{where}, prompt")
        sides = [_messages(row[k], "assistant", f"{where}, {k}") for k in ("chosen", "rejected")]
        if any(not any(m["role"] == "assistant" and m["content"].strip() for m in side) for side in sides):
            skipped.add("pairs with an empty side", number)
            continue
        chosen, rejected = (tokenize(tokenizer, prompt + side) for side in sides)
        if max(len(chosen.ids), len(rejected.ids)) > max_length:
            skipped.add(f"pairs longer than {max_length} tokens", number)
            continue
        pairs.append(Pair(chosen, rejected))
    return pairs, skipped
