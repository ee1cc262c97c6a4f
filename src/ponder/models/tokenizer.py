"""Tokenizer: byte-level BPE through the `tokenizers` library, the chat template through jinja2.

Built either from a GGUF file's `tokenizer.ggml.*` metadata (with the pre-tokenizer that
`tokenizer.ggml.pre` names, as llama.cpp does) or from a Hugging Face folder's tokenizer.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from ponder.errors import BadCheckpoint, UnsupportedModel

# Pre-tokenizer regexes by `tokenizer.ggml.pre`, as in each model's tokenizer.json (llama.cpp
# keeps the same table). Llama 3 also skips merges for words already in the vocabulary.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
PRE_TOKENIZERS: dict[str, tuple[tuple[str, ...], bool]] = {  # name: (regexes in order, ignore_merges)
    "llama-bpe": ((_LLAMA3,), True),
    "qwen2": ((_QWEN2,), False),
    "smollm": ((r"\p{N}", _GPT2), False),
    "starcoder": ((r"\p{N}", _GPT2), False),
    "gpt-2": ((_GPT2,), False),
}

# Token texts that end a turn in one family or another; llama.cpp treats them all as end of generation.
END_OF_GENERATION = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>",
                     "<|end_of_text|>", "<end_of_turn>", "<EOT>"}

# GGUF token types (llama.cpp's llama_token_type).
_CONTROL, _USER_DEFINED = 3, 4


@dataclass
class Tokenizer:
    backend: HFTokenizer
    bos_id: int | None
    eos_id: int | None
    add_bos: bool = False
    chat_template: str | None = None
    stop_ids: frozenset[int] = field(default_factory=frozenset)  # every end-of-generation id

    def __post_init__(self) -> None:
        vocab = self.backend.get_added_tokens_decoder()
        heuristic = {i for i, t in vocab.items() if t.content in END_OF_GENERATION}
        self.stop_ids = frozenset(self.stop_ids | heuristic | ({self.eos_id} - {None}))

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_text(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def _text(self, token_id: int | None) -> str | None:
        return None if token_id is None else self.token_text(token_id)

    def encode(self, text: str, special: bool = True, add_bos: bool | None = None) -> list[int]:
        """Token ids; `special` parses control tokens such as <|im_start|> written in the text."""
        self.backend.encode_special_tokens = not special
        try:
            ids = self.backend.encode(text, add_special_tokens=False).ids
        finally:
            self.backend.encode_special_tokens = False
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            if not ids or ids[0] != self.bos_id:
                ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def stream(self, ids: Iterator[int]) -> Iterator[str]:
        """Text pieces as tokens arrive, holding back bytes of a character not yet complete."""
        stream = decoders.DecodeStream(skip_special_tokens=False)
        for token_id in ids:
            if (piece := stream.step(self.backend, token_id)) is not None:
                yield piece

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat as the template writes it. A last assistant message marked `"prefix": True` (as
        DeepSeek's API marks one) is the start of the reply, for the model to continue: rendered as a
        finished turn, then cut where its content ends (HF's continue_final_message)."""
        if not self.chat_template:
            raise UnsupportedModel("this model has no chat template: pass the prompt with --raw")
        if messages and messages[-1].get("role") == "assistant" and messages[-1].get("prefix"):
            marker = "\x00ponder-prefix-end\x00"
            last = {"role": "assistant", "content": messages[-1]["content"] + marker}
            return self.render_chat([*messages[:-1], last], add_generation_prompt=False).split(marker)[0]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._text(self.bos_id) or "", eos_token=self._text(self.eos_id) or "")

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode(self.render_chat(messages), special=True)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, meta: dict[str, Any]) -> Tokenizer:
        """From GGUF metadata (field name -> value)."""
        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise UnsupportedModel(f"tokenizer model {kind!r} is not supported: ponder reads byte-level BPE (gpt2)")
        pre = meta.get("tokenizer.ggml.pre", "gpt-2")
        if pre not in PRE_TOKENIZERS:
            raise UnsupportedModel(
                f"pre-tokenizer {pre!r} is not supported: ponder knows {', '.join(PRE_TOKENIZERS)}")
        regexes, ignore_merges = PRE_TOKENIZERS[pre]
        tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
        vocab = {t: i for i, t in enumerate(tokens)}
        backend = HFTokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                    for t, ty in zip(tokens, types) if ty == _CONTROL])
        backend.add_tokens([AddedToken(t, special=False, normalized=False)
                            for t, ty in zip(tokens, types) if ty == _USER_DEFINED])
        stop = {meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")} - {None}
        return cls(backend, bos_id=meta.get("tokenizer.ggml.bos_token_id"),
                   eos_id=meta.get("tokenizer.ggml.eos_token_id"),
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=meta.get("tokenizer.chat_template"), stop_ids=frozenset(stop))

    @classmethod
    def from_folder(cls, folder: Path) -> Tokenizer:
        """From a Hugging Face checkpoint folder: tokenizer.json and tokenizer_config.json."""
        try:
            backend = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:
            raise BadCheckpoint(f"{folder}: cannot read tokenizer.json ({e}): re-download the model") from None
        settings = _read_json(folder / "tokenizer_config.json")
        generation = _read_json(folder / "generation_config.json")
        token_id = lambda v: backend.token_to_id(v if isinstance(v, str) else v["content"]) if v else None  # noqa: E731
        bos, eos = token_id(settings.get("bos_token")), token_id(settings.get("eos_token"))
        stop = generation.get("eos_token_id", [])
        stop = set(stop if isinstance(stop, list) else [stop])
        add_bos = settings.get("add_bos_token")
        if add_bos is None:  # Llama 3 says so only in its post-processor
            add_bos = bos is not None and backend.encode("", add_special_tokens=True).ids[:1] == [bos]
        return cls(backend, bos_id=bos, eos_id=eos, add_bos=bool(add_bos),
                   chat_template=settings.get("chat_template"), stop_ids=frozenset(stop))

    def save(self, folder: Path) -> None:
        """Write tokenizer.json, tokenizer_config.json and generation_config.json."""
        self.backend.save(str(folder / "tokenizer.json"))
        settings = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": self._text(self.bos_id),
                    "eos_token": self._text(self.eos_id), "add_bos_token": self.add_bos,
                    "chat_template": self.chat_template}
        (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=1))
        generation = {"bos_token_id": self.bos_id, "eos_token_id": sorted(self.stop_ids)}
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=1))


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
