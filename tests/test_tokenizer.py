"""Tokenizer parity with llama.cpp on the real models, and the chat template and stop ids."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import TINY
from ponder.models.gguf import metadata, open_gguf
from ponder.models.tokenizer import PRE_TOKENIZERS, Tokenizer
from reference import REAL_MODELS, llama_cpp_model, ponder_model
from tiny_gguf import random_model, write_tiny_gguf

PIECES = [
    "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "SELECT * FROM t;",
    "12345", "3.14159", "1,234,567", "-42", "0x1F", "1e-5", "2026-12-01", "$9.99", "50%", "17 + 25 = 42",
    "café", "naïve", "Straße", "Ελληνικά", "русский текст", "日本語のテキスト", "中文", "한국어", "🙂", "🚀🚀",
    "∑∫√≤", "e\u0301", "\u200b", "\t", "  ", "    ", "\n", "\n\n", "\r\n", " \n ", "\t\t", "   \n\n   ",
    "Hello", " world", "HELLO", "it's", "I'LL", "we've", "don't", "The quick brown fox", "jumps over",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "<", "|", ">", "<|",
    "\\boxed{42}", "The answer is 7.", "```python", "```", "#include <stdio.h>", "a=b", "x_1", "__init__",
]


def varied_strings(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    strings = list(PIECES)
    while len(strings) < n:
        strings.append("".join(rng.choice(PIECES) for _ in range(rng.randint(2, 6))))
    return strings[:n]


@pytest.mark.parametrize("name", REAL_MODELS)
def test_token_ids_equal_llama_cpp(name: str) -> None:
    tokenizer, llm = ponder_model(name).tokenizer, llama_cpp_model(name)
    mismatches = []
    for text in varied_strings():
        expected = llm.tokenize(text.encode(), add_bos=False, special=True)
        got = tokenizer.encode(text, special=True, add_bos=False)
        if got != expected:
            mismatches.append((text, got, expected))
        assert tokenizer.decode(got) == text
    assert not mismatches, f"{len(mismatches)} of 200 differ, e.g. {mismatches[:3]}"


@pytest.mark.parametrize("name", REAL_MODELS)
def test_special_tokens_as_text(name: str) -> None:
    tokenizer, llm = ponder_model(name).tokenizer, llama_cpp_model(name)
    text = "<|im_start|>user\nhi<|im_end|>"
    assert tokenizer.encode(text, special=False, add_bos=False) == llm.tokenize(text.encode(), add_bos=False,
                                                                                 special=False)
    assert len(tokenizer.encode(text, special=False)) > len(tokenizer.encode(text, special=True))


@pytest.mark.parametrize("name", REAL_MODELS)
def test_chat_template_and_stop_ids(name: str) -> None:
    tokenizer = ponder_model(name).tokenizer
    text = tokenizer.render_chat([{"role": "user", "content": "What is 2 + 2?"}])
    assert text.endswith("<|im_start|>assistant\n") and "What is 2 + 2?" in text
    im_end = tokenizer.backend.token_to_id("<|im_end|>")
    assert im_end in tokenizer.stop_ids and tokenizer.eos_id in tokenizer.stop_ids
    # A reply begun by the caller ("prefix": True) is continued, not closed and answered anew.
    begun = tokenizer.render_chat([{"role": "user", "content": "What is 2 + 2?"},
                                   {"role": "assistant", "content": "```python\n", "prefix": True}])
    assert begun == text + "```python\n"


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_each_pre_tokenizer_splits_as_llama_cpp(pre: str, tmp_path: Path) -> None:
    """Every pre-tokenizer ponder knows, on a small byte-level vocabulary, against llama.cpp's own."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / f"{pre}.gguf"
    write_tiny_gguf(path, random_model(TINY["smollm2-tied"].replace(vocab_size=720)), pre=pre)
    tokenizer = Tokenizer.from_gguf(metadata(open_gguf(path)))
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    for text in varied_strings():
        assert tokenizer.encode(text, add_bos=False) == llm.tokenize(text.encode(), add_bos=False, special=True), text
