"""One set of tests for every Generator backend on this machine, on the real SmolLM2-135M-Instruct."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ponder.engine.protocol import Generator, ModelInfo, Sequence
from ponder.engine.sampling import SamplingParams
from reference import ponder_model
from servers import free_port, serving

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["What is 17 + 25?", "List three fruits, one per line, and nothing else."]


def make_native() -> Generator:
    from ponder.engine.native import NativeEngine

    return NativeEngine(ponder_model(MODEL), cache_bytes=256 << 20)


def make_llamacpp() -> Generator:
    pytest.importorskip("llama_cpp")
    from ponder.engine.llamacpp import LlamaCppEngine
    from ponder.models.registry import resolve

    ponder_model(MODEL)  # skips when the model is not pulled
    return LlamaCppEngine(resolve(MODEL), n_ctx=4096)


@contextlib.contextmanager
def make_http() -> Iterator[Generator]:
    """ponder's HTTP backend against a real OpenAI-compatible server: llama-cpp-python's, on loopback."""
    pytest.importorskip("llama_cpp.server")
    from ponder.engine.openai_http import OpenAIHTTPEngine
    from ponder.models.registry import resolve

    loaded = ponder_model(MODEL)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(resolve(MODEL)),
                               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        info = ModelInfo("llama-cpp-server", loaded.config.n_params, 4096, loaded.tokenizer.stop_ids)
        yield OpenAIHTTPEngine(url, MODEL, loaded.tokenizer, info)
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def make_ponder_http() -> Iterator[Generator]:
    """ponder's HTTP backend against ponder's own server (token ids and log-probabilities exact)."""
    from ponder.engine.backends import open_generator
    from ponder.engine.openai_http import OpenAIHTTPEngine
    from ponder.engine.scheduler import Scheduler
    from ponder.serve.app import create_app

    loaded = ponder_model(MODEL)
    scheduler = Scheduler(open_generator(MODEL))
    try:
        with serving(create_app(scheduler, MODEL)) as url:
            info = ModelInfo("ponder-server", loaded.config.n_params, 4096, loaded.tokenizer.stop_ids)
            yield OpenAIHTTPEngine(url, MODEL, loaded.tokenizer, info)
    finally:
        scheduler.close()


BACKENDS = {"native": contextlib.contextmanager(lambda: iter([make_native()])),
            "llama.cpp": contextlib.contextmanager(lambda: iter([make_llamacpp()])),
            "http": make_http, "ponder-http": make_ponder_http}
# Whether one prompt's samples share its computation (HTTP backends send one request per sample).
SHARES_PROMPTS = {"native": True, "llama.cpp": True, "http": False, "ponder-http": False}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def generator(request: pytest.FixtureRequest) -> Iterator[Generator]:
    with BACKENDS[request.param]() as generator:
        generator.kind = request.param
        yield generator


def chat(generator: Generator, question: str) -> list[int]:
    return ponder_model(MODEL).tokenizer.encode_chat([{"role": "user", "content": question}])


def test_model_facts(generator: Generator) -> None:
    assert abs(generator.info.n_params - 134.5e6) / 134.5e6 < 0.01
    assert generator.info.context_length >= 2048 and generator.info.stop_ids


def test_n_samples_per_prompt(generator: Generator) -> None:
    prompts = [chat(generator, q) for q in QUESTIONS]
    before = generator.usage.snapshot()
    out = generator.sample(prompts, 3, SamplingParams(temperature=0.8, max_tokens=24, seed=0))
    spent = generator.usage - before
    assert [len(group) for group in out] == [3, 3]
    for prompt, group in zip(prompts, out):
        for seq in group:
            assert seq.prompt == tuple(prompt) and 0 < len(seq.tokens) <= 24
            assert len(seq.logprobs) == len(seq.tokens) and all(lp <= 0 for lp in seq.logprobs)
            assert seq.finish_reason in ("stop", "length") and seq.text
    assert spent.generated_tokens >= sum(len(s.tokens) for g in out for s in g)
    copies = 1 if SHARES_PROMPTS[generator.kind] else 3
    assert spent.prompt_tokens_computed + spent.prompt_tokens_cached == copies * sum(len(p) for p in prompts)


def test_same_seed_same_tokens(generator: Generator) -> None:
    prompt = chat(generator, QUESTIONS[1])
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=11)
    first = [s.tokens for s in generator.sample([prompt], 4, params)[0]]
    # llama.cpp's logits move with what its cache holds and what shares its batch (measured: a first
    # token drawn differently on the next call, at temperature 1): the same seed repeats only up to that.
    if generator.kind != "llama.cpp":
        assert first == [s.tokens for s in generator.sample([prompt], 4, params)[0]]
    other = SamplingParams(temperature=1.0, max_tokens=16, seed=12)
    assert first != [s.tokens for s in generator.sample([prompt], 4, other)[0]]


def test_one_seed_draws_differently_for_each_prompt() -> None:
    # An evaluation samples every question under one seed: sample i must not take the same turn on each.
    a, b = Sequence((1, 2, 3)).fork(2), Sequence((1, 2, 4)).fork(2)
    assert a[0].seed_for(0) == Sequence((1, 2, 3)).fork(2)[0].seed_for(0)  # reproducible
    assert len({a[0].seed_for(0), a[1].seed_for(0), b[0].seed_for(0), b[1].seed_for(0), a[0].seed_for(1)}) == 5
    assert a[0].seed_for(None) is None


def test_stepwise_extension_with_a_stop_string(generator: Generator) -> None:
    prompt = chat(generator, QUESTIONS[1])
    [[whole]] = generator.sample([prompt], 1, SamplingParams(max_tokens=30))
    seq, steps = Sequence(tuple(prompt)), []
    while not seq.done and len(seq.tokens) < len(whole.tokens):
        [seq] = generator.extend([seq], SamplingParams(max_tokens=30 - len(seq.tokens), stop=("\n",)))
        steps.append(seq)
    assert len(steps) >= 2 and all(s.stop == "\n" for s in steps[:-1])
    assert seq.tokens == whole.tokens[: len(seq.tokens)] and seq.text.startswith(steps[0].text)


def test_fork_continues_as_the_unforked_sequence(generator: Generator) -> None:
    root = Sequence(tuple(chat(generator, QUESTIONS[0])))
    [straight] = generator.extend([root], SamplingParams(max_tokens=10))
    [half] = generator.extend([root], SamplingParams(max_tokens=4))
    before = generator.usage.snapshot()
    children = generator.extend(half.fork(3), SamplingParams(max_tokens=6))
    assert all(child.tokens == straight.tokens for child in children), (straight.text, [c.text for c in children])
    if SHARES_PROMPTS[generator.kind]:
        assert (generator.usage - before).prompt_tokens_cached >= len(root.prompt)  # the past was not recomputed


def test_chat_prompts_and_top_logprobs(generator: Generator) -> None:
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert generator.encode_chat(messages) == chat(generator, QUESTIONS[0])
    [seq] = generator.extend([Sequence(tuple(chat(generator, QUESTIONS[0])))],
                             SamplingParams(max_tokens=6, top_logprobs=5))
    assert len(seq.top_logprobs) == len(seq.tokens) > 0
    for token, logprob, top in zip(seq.tokens, seq.logprobs, seq.top_logprobs):
        assert 1 <= len(top) <= 5 and list(top.values()) == sorted(top.values(), reverse=True)
        assert next(iter(top)) == token  # greedy: the chosen token is the likeliest
        assert abs(top[token] - logprob) < 1e-3
