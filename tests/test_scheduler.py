"""One engine stepped by its own thread for many callers: continuous batching, cancellation, shutdown."""

from __future__ import annotations

import threading

import pytest
import torch

from ponder.engine.native import NativeEngine
from ponder.engine.protocol import Sequence, Usage
from ponder.engine.sampling import SamplingParams
from ponder.engine.scheduler import EngineClosed, Scheduler
from ponder.models.loader import LoadedModel

PROMPTS = [tuple(range(10, 30)), (5, 6, 7), tuple(range(60, 75))]


def engine(tiny: LoadedModel) -> NativeEngine:
    return NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)


def test_callers_in_threads_share_batches_and_get_what_they_would_alone(tiny: LoadedModel) -> None:
    params = [SamplingParams(max_tokens=12), SamplingParams(temperature=1.0, max_tokens=20, seed=4),
              SamplingParams(temperature=0.7, max_tokens=8, seed=9, stop=("a",))]
    solo = engine(tiny)
    expected = [solo.extend(Sequence(p).fork(2), q) for p, q in zip(PROMPTS, params)]
    shared = engine(tiny)
    widths: list[int] = []
    forward = shared._forward
    shared._forward = lambda rows: widths.append(len(rows)) or forward(rows)  # type: ignore[method-assign]
    scheduler = Scheduler(shared)
    got: dict[int, list[Sequence]] = {}
    spent: dict[int, Usage] = {}

    def call(k: int) -> None:
        got[k] = scheduler.extend(Sequence(PROMPTS[k]).fork(2), params[k])
        spent[k] = scheduler.usage.snapshot()  # this thread's own, whatever else shared the batches

    threads = [threading.Thread(target=call, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    scheduler.close()
    for k in range(3):
        assert [s.tokens for s in got[k]] == [s.tokens for s in expected[k]]
        assert spent[k].generated_tokens == sum(len(s.tokens) for s in got[k])
        assert spent[k].prompt_tokens_computed + spent[k].prompt_tokens_cached == len(PROMPTS[k])
    assert max(widths) > 2  # some decode step ran rows of more than one caller
    assert shared.usage.generated_tokens == sum(u.generated_tokens for u in spent.values())
    assert scheduler.usage.generated_tokens == 0  # the test's own thread asked for nothing


def test_a_cancelled_job_leaves_and_frees_its_rows(tiny: LoadedModel) -> None:
    shared = engine(tiny)
    scheduler = Scheduler(shared)
    started, cancelled = threading.Event(), threading.Event()

    def hold(index: int, sequence: Sequence) -> None:  # the engine waits at its first token until the cancel lands
        started.set()
        cancelled.wait(30)

    job = scheduler.submit(Sequence(PROMPTS[0]).fork(4), SamplingParams(temperature=1.0, max_tokens=200, seed=1),
                           on_token=hold)
    assert started.wait(30)
    scheduler.cancel(job)
    cancelled.set()
    with pytest.raises(EngineClosed, match="cancelled"):
        scheduler.wait(job, timeout=30)
    assert scheduler.extend([Sequence(PROMPTS[1])], SamplingParams(max_tokens=3))[0].tokens  # still serving
    scheduler.close()
    assert shared.blocks.available == shared.blocks.n_blocks - 1 and not shared.busy


def test_shutdown_finishes_in_flight_work_then_refuses_more(tiny: LoadedModel) -> None:
    scheduler = Scheduler(engine(tiny))
    job = scheduler.submit([Sequence(PROMPTS[2])], SamplingParams(max_tokens=10))
    scheduler.close()
    assert len(scheduler.wait(job)[0].tokens) == 10
    with pytest.raises(EngineClosed, match="shutting down"):
        scheduler.submit([Sequence(PROMPTS[2])], SamplingParams(max_tokens=10))


def test_an_engine_failure_reaches_every_waiting_caller(tiny: LoadedModel) -> None:
    broken = engine(tiny)

    def fail(rows: list) -> torch.Tensor:
        raise RuntimeError("out of memory, say")

    broken._forward = fail  # type: ignore[method-assign]
    scheduler = Scheduler(broken)
    with pytest.raises(EngineClosed, match="out of memory, say"):
        scheduler.extend([Sequence(PROMPTS[0])], SamplingParams(max_tokens=4))


def test_bad_requests_fail_in_the_callers_thread_and_states_run_in_the_engines(tiny: LoadedModel) -> None:
    scheduler = Scheduler(engine(tiny))
    with pytest.raises(ValueError, match="max_tokens"):
        scheduler.extend([Sequence(PROMPTS[0])], SamplingParams(max_tokens=10_000))
    alone = engine(tiny).states([PROMPTS[0], PROMPTS[1]])
    torch.testing.assert_close(scheduler.states([PROMPTS[0], PROMPTS[1]]), alone)
    assert scheduler.load == 0
    scheduler.close()
