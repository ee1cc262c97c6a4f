"""The confidence strategy: DeepConf's windows and threshold, Adaptive-Consistency's stop, on scripted log-probs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest

from ponder.budget import Budget
from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.errors import BadParameter
from ponder.eval.grid import GridSettings, run_item
from ponder.search import make_strategy
from ponder.search.base import Search
from ponder.search.confidence import leader_probability, lowest_group_confidence, token_confidences
from scripted import ScriptedTask, task

SURE, UNSURE = 5.0, 0.5  # token confidences: minus the mean of the top log-probabilities


class Confident:
    """Sample i writes scripts[i % len] one character a token, ignoring stop strings; each token's confidence
    as scripted for its character: a lowercase letter is unsure, anything else sure."""

    def __init__(self, scripts: list[str]):
        self.scripts, self.info, self.usage = scripts, ModelInfo("scripted", 1000, 1 << 20), Usage()

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return [ord(c) for c in "".join(m["content"] for m in messages)]

    def extend(self, sequences: list[Sequence], params) -> list[Sequence]:
        out = []
        for seq in sequences:
            script = self.scripts[seq.branch[-1] % len(self.scripts)]
            new = script[len(seq.tokens):len(seq.tokens) + params.max_tokens]
            self.usage.generated_tokens += len(new)
            tops = tuple({1: -(UNSURE if c.islower() else SURE), 2: -(UNSURE if c.islower() else SURE)} for c in new)
            done = len(seq.tokens) + len(new) >= len(script)
            out.append(replace(seq, tokens=seq.tokens + tuple(map(ord, new)), text=seq.text + new,
                               logprobs=seq.logprobs + tuple(-1.0 for _ in new), top_logprobs=seq.top_logprobs + tops,
                               done=done, finish_reason="stop" if done else "length"))
        return out


def test_the_beta_stopping_rule() -> None:
    assert leader_probability(3, 0) == pytest.approx(0.9375)  # 3 to 0: not yet settled at 0.95
    assert leader_probability(4, 0) == pytest.approx(0.96875)  # 4 to 0: settled
    assert leader_probability(2, 2) == pytest.approx(0.5) and leader_probability(0, 0) == pytest.approx(0.5)
    assert leader_probability(6, 1) > 0.95 > leader_probability(5, 2)
    for a, b in [(1, 0), (3, 2), (7, 4), (9, 9)]:  # symmetric: the two orders share the probability
        assert leader_probability(a, b) + leader_probability(b, a) == pytest.approx(1.0)
    # Against the Beta(6, 3) density integrated over (0.5, 1) numerically.
    steps = 20000
    log_norm = math.lgamma(9) - math.lgamma(6) - math.lgamma(3)
    density = [math.exp(log_norm + 5 * math.log(x) + 2 * math.log(1 - x))
               for x in (0.5 + (i + 0.5) * 0.5 / steps for i in range(steps))]
    assert leader_probability(5, 2) == pytest.approx(sum(density) * 0.5 / steps, abs=1e-6)


def test_group_confidence_is_the_lowest_window_mean() -> None:
    assert lowest_group_confidence([5, 5, 1, 1, 5, 5], 2) == 1
    assert lowest_group_confidence([5, 5, 1, 5, 5, 5], 2) == 3
    assert lowest_group_confidence([4, 2], 8) == 3  # shorter than a window: the mean of all
    assert lowest_group_confidence([], 8) == 0


def test_token_confidence_is_high_where_the_model_is_sure() -> None:
    sure, torn = {7: -0.01, 9: -9.0, 3: -11.0}, {8: -0.7, 9: -0.7, 3: -6.0}  # one clear choice; two alike
    seq = Sequence((1,), tokens=(7, 8), logprobs=(-0.01, -0.7), top_logprobs=(sure, torn))
    assert token_confidences(seq) == pytest.approx([20.01 / 3, 7.4 / 3])
    # Only the sampled token's log-probability: its probability, which ranks the same way.
    fallback = token_confidences(replace(seq, top_logprobs=()))
    assert fallback == pytest.approx([math.exp(-0.01), math.exp(-0.7)]) and fallback[0] > fallback[1]
    with pytest.raises(BadParameter, match="log-probabilities"):  # a backend that gives none
        token_confidences(replace(seq, top_logprobs=(), logprobs=()))


def run(scripts: list[str], n: int, budget: Budget | None = None, the_task: ScriptedTask | None = None,
        **settings) -> tuple:
    generator = Confident(scripts)
    search = Search(generator, the_task or task("7"), budget)
    result = make_strategy("confidence", n, window=4, **settings).run(search)
    assert search.budget.spent.generated_tokens == generator.usage.generated_tokens  # every token is charged
    return result, generator.usage.generated_tokens


def test_an_easy_question_settles_after_a_few_traces() -> None:
    result, spent = run(["SO 3 + 4 = 7. THE ANSWER IS 7."], n=16, warmup=4)
    assert result.answer == "7" and result.settings["samples"] == 4 and result.settings["stopped_early"] == 0
    assert result.settings["votes"] == 4  # all alike: all at the threshold, all kept
    assert spent == 4 * len("SO 3 + 4 = 7. THE ANSWER IS 7.")
    assert all(c.score == SURE for c in result.candidates)  # each candidate's score is its confidence


def test_a_split_question_uses_the_whole_budget() -> None:
    result, spent = run(["THE ANSWER IS 7.", "THE ANSWER IS 6."], n=12, warmup=4, keep=1.0)
    assert result.settings["samples"] == 12 and result.answer in ("6", "7")
    assert spent == 12 * len("THE ANSWER IS 7.")


def test_a_trace_whose_window_falls_below_the_warm_up_threshold_stops_there() -> None:
    sure = "THE ANSWER IS 7."
    wavering = "THE ANSWER... hmm, maybe it is 6 after all, or not. THE ANSWER IS 6."
    # Warm-up: three sure traces and a wavering one; keeping the top 75% puts the threshold above the wavering.
    result, spent = run([sure, sure, sure, wavering], n=8, warmup=4, keep=0.75, settle=0.999, batch=4)
    assert result.answer == "7" and result.settings["threshold"] == pytest.approx(0.75 * SURE + 0.25 * UNSURE)
    assert result.settings["samples"] == 8 and result.settings["stopped_early"] == 1
    assert result.settings["votes"] == 6
    unvoted = sorted((c for c in result.candidates if c.answer is None), key=lambda c: c.tokens)
    assert [c.reason.split(":")[0] for c in unvoted] == ["cut early", "no vote"]  # the later one, the warm-up's
    late = unvoted[0]
    # Grown 4 tokens at a time: the 4th chunk ends in ". hm", whose window falls below; cut there.
    assert late.tokens == 16 and late.text == wavering[:16]
    assert spent == 6 * len(sure) + len(wavering) + 16  # the cut trace's tokens are charged, its rest never drawn


def test_a_trace_that_falls_below_as_it_ends_is_not_cut() -> None:
    sure, weak_end = "THE ANSWER IS 7.", "THE ANSWER IS 6. hmm"  # its last chunk: " hmm", below the threshold
    result, _ = run([sure, sure, sure, weak_end], n=8, warmup=4, keep=0.75, settle=0.999)
    assert result.settings["stopped_early"] == 0 and result.settings["votes"] == 6  # finished: below, not cut


@dataclass(frozen=True)
class CodeLike(ScriptedTask):
    answer_ends: ClassVar[tuple[str, ...]] = ("\n```\n",)


def test_a_stop_string_split_across_two_windows_ends_the_trace() -> None:
    script = "THE ANSWER IS 7.\n```\nAND THEN A LONG TALK THAT COSTS TOKENS"  # the stop spans tokens 16-20
    result, _ = run([script], n=8, warmup=1, settle=0.999, the_task=CodeLike("code/0", task().messages, "7"))
    later = [c.tokens for c in result.candidates][1:]
    assert later == [24] * 7  # chunks end at tokens 16, 20, 24: the stop string, at 17-21, ends in the last
    assert result.candidates[0].tokens == len(script)  # the warm-up is drawn whole (the engine would stop it)


def test_a_limited_budget_stops_sampling() -> None:
    answer = "THE ANSWER IS 7."
    result, spent = run([answer, "THE ANSWER IS 6."], n=16, budget=Budget(generated_tokens=6 * len(answer)),
                        warmup=4, keep=1.0)
    assert result.settings["samples"] == 8 and spent == 8 * len(answer)  # the batch that crossed the limit, no more


def test_settings_are_checked_and_the_grid_records_the_samples_drawn() -> None:
    with pytest.raises(BadParameter, match="keep in"):
        make_strategy("confidence", 8, keep=0)
    GridSettings(("majority", "confidence:keep=0.9"), (4, 16))  # no verifier needed; settings of its own allowed
    generator = Confident(["SO 3 + 4 = 7. THE ANSWER IS 7."])
    row = run_item(generator, task("7"), 0, GridSettings(("majority", "confidence"), (8,)))
    assert row["results"]["confidence@8"]["samples"] == 4 and row["results"]["confidence@8"]["correct"]
    assert "samples" not in row["results"]["majority@8"]  # a pooled cell draws exactly its n


def test_on_the_native_engine_a_trace_grown_a_window_at_a_time_is_the_trace_drawn_whole(tiny) -> None:  # noqa: ANN001
    from ponder.engine.native import NativeEngine

    engine = NativeEngine(tiny, cache_bytes=8 << 20, block_size=4)
    strategy = make_strategy("confidence", 8, window=4, keep=1.0, settle=1.0, temperature=1.0, max_tokens=24)
    search = Search(engine, task("7"))
    result = strategy.run(search)
    assert result.settings["samples"] == 8 and len(result.candidates) == 8
    spent, kept = search.budget.spent.generated_tokens, sum(c.tokens for c in result.candidates)
    assert kept <= spent <= kept + 8  # an end-of-generation token is charged but not kept
    whole = Search(engine, task("7")).sample(8, replace(strategy.sampling.whole(), top_logprobs=20))
    drawn = {c.text: c for c in result.candidates}
    for seq in whole:  # the same seeds, drawn in one call: an uncut trace is the same, with the same confidence
        if seq.text in drawn:
            assert drawn[seq.text].tokens == len(seq.tokens)
            assert drawn[seq.text].score == pytest.approx(strategy._confidence(seq))
    uncut = [c for c in result.candidates if not (c.reason or "").startswith("cut")]
    assert {c.text for c in uncut} <= {seq.text for seq in whole}
