"""The native engine on the fp32 reference path: batching, prefix sharing and forks change nothing."""

from __future__ import annotations


import pytest
import torch

from ponder.engine.batched import prefill_batches
from ponder.engine.native import NativeEngine
from ponder.engine.protocol import Sequence
from ponder.engine.sampling import SamplingParams
from ponder.engine.stream import generate_tokens
from ponder.models.loader import LoadedModel

GREEDY = SamplingParams(max_tokens=12)


def one_at_a_time(loaded: LoadedModel, prompt: list[int], n: int) -> list[int]:
    return list(generate_tokens(loaded.model, prompt, SamplingParams(max_tokens=n), loaded.tokenizer.stop_ids))


PROMPTS = [[5, 6, 7], list(range(10, 50)), [300, 301, 17, 18, 19, 40, 41], list(range(60, 80))]


def test_batched_greedy_equals_one_at_a_time(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    got = engine.sample(PROMPTS, 1, GREEDY)
    for prompt, [seq] in zip(PROMPTS, got):
        assert list(seq.tokens) == one_at_a_time(tiny, prompt, 12)


@pytest.mark.parametrize("lengths", [[170, 670, 300, 310, 512, 24, 25, 26], [1], [9000, 3], list(range(1, 60, 7))])
def test_prefill_batches_cover_every_context_once_with_little_padding(lengths: list[int]) -> None:
    batches = prefill_batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        padded, real = len(b) * max(lengths[i] for i in b), sum(lengths[i] for i in b)
        assert len(b) == 1 or (padded <= 1.25 * real and padded <= 4096)


def test_a_prompt_is_computed_once_for_all_its_samples(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    prompt = list(range(10, 40))
    engine.sample([prompt], 8, SamplingParams(temperature=1.0, max_tokens=5, seed=0))
    assert engine.usage.prompt_tokens_computed == 30 and engine.usage.generated_tokens == 40
    before = engine.usage.snapshot()
    engine.sample([prompt], 4, SamplingParams(temperature=1.0, max_tokens=5, seed=1))
    spent = engine.usage - before
    assert spent.prompt_tokens_computed == 1 and spent.prompt_tokens_cached == 29  # only the last, for its logits


def test_a_fork_continues_exactly_as_the_unforked_sequence(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    root = Sequence(tuple(range(10, 23)))
    [straight] = engine.extend([root], SamplingParams(max_tokens=14))
    [half] = engine.extend([root], SamplingParams(max_tokens=6))
    children = engine.extend(half.fork(3), SamplingParams(max_tokens=8))
    for child in children:
        assert child.tokens == straight.tokens
        assert child.logprobs == pytest.approx(straight.logprobs, abs=1e-5)
    assert engine.usage.prompt_tokens_cached > 0


def test_seeded_samples_do_not_depend_on_the_batch(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    params = SamplingParams(temperature=1.0, max_tokens=10, seed=42)
    alone = engine.sample([PROMPTS[1]], 4, params)[0]
    crowded = engine.sample([PROMPTS[0], PROMPTS[1], PROMPTS[2]], 4, params)[1]
    assert [s.tokens for s in alone] == [s.tokens for s in crowded]
    assert len({s.tokens for s in alone}) > 1  # the four samples differ from each other
    other_seed = engine.sample([PROMPTS[1]], 4, SamplingParams(temperature=1.0, max_tokens=10, seed=43))[0]
    assert [s.tokens for s in other_seed] != [s.tokens for s in alone]


@torch.inference_mode()
def test_logprobs_are_the_model_log_probabilities(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    [[seq]] = engine.sample([PROMPTS[2]], 1, SamplingParams(temperature=0.8, max_tokens=8, seed=3))
    logits = tiny.model(torch.tensor([list(seq.all_tokens)]))[0].log_softmax(-1)
    start = len(seq.prompt) - 1
    expected = [float(logits[start + i, t]) for i, t in enumerate(seq.tokens)]
    assert list(seq.logprobs) == pytest.approx(expected, abs=1e-4)


def test_a_small_cache_makes_sequences_wait_not_fail(tiny: LoadedModel) -> None:
    roomy = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    tight = NativeEngine(tiny, cache_bytes=40 * block_bytes(tiny, 4), block_size=4)
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=5)
    assert [[s.tokens for s in g] for g in tight.sample(PROMPTS, 3, params)] == \
        [[s.tokens for s in g] for g in roomy.sample(PROMPTS, 3, params)]
    assert tight.blocks.available == tight.blocks.n_blocks - 1  # every block is back (held by nobody)


def block_bytes(loaded: LoadedModel, block_size: int) -> int:
    from ponder.engine.paged_cache import KVPool

    return KVPool.bytes_per_block(loaded.config, block_size, torch.float32)


def test_stop_strings_end_a_step(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    [[free]] = engine.sample([PROMPTS[3]], 1, SamplingParams(max_tokens=20))
    stop = free.text[len(engine.tokenizer.decode(free.tokens[:6])):][:2]  # text that first appears at token 7
    assert stop
    [[stopped]] = engine.sample([PROMPTS[3]], 1, SamplingParams(max_tokens=20, stop=(stop,)))
    assert stopped.stop == stop and stopped.finish_reason == "stop" and stop in stopped.text
    assert free.tokens[: len(stopped.tokens)] == stopped.tokens and len(stopped.tokens) < 20
    assert stop not in engine.tokenizer.decode(stopped.tokens[:-1])
    # Extending continues after the stop string: the next stop counts from there.
    [more] = engine.extend([stopped], SamplingParams(max_tokens=20 - len(stopped.tokens)))
    assert more.tokens == free.tokens


@pytest.mark.parametrize("bad, says", [
    (lambda: SamplingParams(temperature=-0.5), "temperature"),
    (lambda: SamplingParams(top_p=0.0), "top-p"),
    (lambda: SamplingParams(top_p=1.5), "top-p"),
    (lambda: SamplingParams(stop=[3]), "stop"),
    (lambda: SamplingParams(stop={"a": 1}), "stop"),
])
def test_bad_settings_are_value_errors_naming_the_parameter(bad, says: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=says):
        bad()


def test_bad_requests_are_value_errors(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=1 << 20, block_size=4)
    with pytest.raises(ValueError, match="n must be"):
        engine.sample([[1, 2]], 0, GREEDY)
    with pytest.raises(ValueError, match="max_tokens"):
        engine.sample([[1, 2]], 1, SamplingParams(max_tokens=tiny.config.max_seq_len))
    small = NativeEngine(tiny, cache_bytes=10 * block_bytes(tiny, 4), block_size=4)
    with pytest.raises(ValueError, match="KV cache"):
        small.sample([list(range(40))], 1, GREEDY)


def test_real_model_batched_greedy_equals_one_at_a_time() -> None:
    from reference import ponder_model

    loaded = ponder_model("smollm2-135m-instruct")
    engine = NativeEngine(loaded, cache_bytes=64 << 20)
    prompts = [loaded.tokenizer.encode_chat([{"role": "user", "content": q}]) for q in
               ("What is 17 + 25?", "Name three colours.", "Write a haiku about the sea, please, in English.")]
    for prompt, [seq] in zip(prompts, engine.sample(prompts, 1, SamplingParams(max_tokens=24))):
        assert list(seq.tokens) == one_at_a_time(loaded, prompt, 24)[: len(seq.tokens)]
        assert seq.done or len(seq.tokens) == 24


def test_a_value_head_scores_every_generated_token_across_calls_and_forks(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    torch.manual_seed(0)
    head = torch.nn.Linear(tiny.config.dim, 1)
    engine.value_head = lambda hidden: head(hidden).squeeze(-1)
    params = SamplingParams(temperature=1.0, max_tokens=5, seed=3)
    first = engine.extend(Sequence(tuple(PROMPTS[1])).fork(3), params)  # stopped by length: the last is run too
    grown = engine.extend([child for seq in first for child in seq.fork(2)], params)
    for seq in [*first, *grown]:
        assert len(seq.values) == len(seq.tokens)
        with torch.no_grad():
            hidden = tiny.model.hidden_states(torch.tensor([seq.all_tokens]))[0, len(seq.prompt):]
            expected = head(hidden).squeeze(-1)
        torch.testing.assert_close(torch.tensor(seq.values), expected, atol=1e-4, rtol=1e-4)
    longest = max(grown, key=lambda s: len(s.tokens))
    before = engine.usage.snapshot()
    [again] = engine.extend([longest], params)
    spent = engine.usage - before
    assert spent.prompt_tokens_cached == len(longest.all_tokens) - 1  # all kept but the last (run for its logits)
    assert spent.prompt_tokens_computed == 1 + (not again.done)  # and, unless it ended, the new last token's state


def test_states_are_the_models_hidden_states_and_reuse_the_cache(tiny: LoadedModel) -> None:
    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    contexts = [tuple(PROMPTS[1]), tuple(PROMPTS[1][:17]), tuple(PROMPTS[0]), tuple(PROMPTS[1])]
    got = engine.states(contexts)
    for context, state in zip(contexts, got):
        with torch.no_grad():
            expected = tiny.model.hidden_states(torch.tensor([context]))[0, -1]
        torch.testing.assert_close(state, expected, atol=1e-4, rtol=1e-4)
    before = engine.usage.snapshot()
    engine.states([tuple(PROMPTS[1][:30])])  # inside a context computed above: only the last token and a block
    assert (engine.usage - before).prompt_tokens_computed <= 4


def test_jobs_stepped_together_share_batches_and_each_gets_what_it_would_alone(tiny: LoadedModel) -> None:
    alone = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    sampled = SamplingParams(temperature=1.0, max_tokens=10, seed=2)
    expected_a = alone.extend([Sequence(tuple(PROMPTS[0]))], GREEDY)
    expected_b = alone.extend(Sequence(tuple(PROMPTS[2])).fork(3), sampled)
    shared = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    forwards, forward = [], shared._forward
    shared._forward = lambda rows: forwards.append(len(rows)) or forward(rows)  # type: ignore[method-assign]
    seen: list[tuple[int, int]] = []
    job_a = shared.submit([Sequence(tuple(PROMPTS[0]))], GREEDY)
    job_b = shared.submit(Sequence(tuple(PROMPTS[2])).fork(3), sampled,
                          on_token=lambda i, seq: seen.append((i, len(seq.tokens))))
    while shared.busy:
        shared.step()
    assert job_a.finished and job_b.finished
    assert [s.tokens for s in job_a.results] == [s.tokens for s in expected_a]
    assert [s.tokens for s in job_b.results] == [s.tokens for s in expected_b]
    assert max(forwards) == 4  # one decode batch held both jobs' rows
    assert sorted(seen) == sorted((i, k) for i, s in enumerate(job_b.results) for k in range(1, len(s.tokens) + 1))


def test_incremental_decoding_gives_the_whole_decode_a_token_at_a_time() -> None:
    """Each step decodes a few tokens, not the whole sequence; the text it builds is the whole decode wherever a
    character is complete (emoji and CJK split across byte-level tokens included)."""
    from ponder.engine.batched import decode_more
    from reference import ponder_model

    tokenizer = ponder_model("smollm2-135m-instruct").tokenizer
    text = "Café: 日本語のテキスト 🧠🧪 naïve — «quotes»\n  indented\tand 1,234.5 done."
    tokens = tuple(tokenizer.encode(text, add_bos=False))
    calls: list[int] = []

    def decode(ids: tuple[int, ...]) -> str:
        calls.append(len(ids))
        return tokenizer.decode(ids)

    built, offsets = "", (0, 0)
    for n in range(1, len(tokens) + 1):
        added, offsets = decode_more(decode, tokens[:n], *offsets)
        built += added
        whole = tokenizer.decode(tokens[:n])
        assert whole.startswith(built) and (built == whole or whole.endswith("\ufffd") or "\ufffd" in whole[len(built):])
    assert built == text and max(calls) <= 12  # a window of tokens a step, never the whole sequence
