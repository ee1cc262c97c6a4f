"""The confidence strategy: DeepConf's windows and threshold, Adaptive-Consistency's stop, on scripted log-probs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.errors import BadParameter
from ponder.eval.grid import GridSettings
from ponder.search import make_strategy
from ponder.search.base import Search
from ponder.search.confidence import leader_probability, lowest_group_confidence, token_confidences
from scripted import task

SURE, UNSURE = 5.0, 0.5  # token confidences: minus the mean of the top log-probabilities


class Confident:
    """Sample i writes scripts[i % len] one character a token; each token's confidence as scripted for its
    character: a lowercase letter is unsure, anything else sure."""

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


def test_group_confidence_is_the_lowest_window_mean() -> None:
    assert lowest_group_confidence([5, 5, 1, 1, 5, 5], 2) == 1
    assert lowest_group_confidence([5, 5, 1, 5, 5, 5], 2) == 3
    assert lowest_group_confidence([4, 2], 8) == 3  # shorter than a window: the mean of all
    seq = Sequence((1,), tokens=(7, 8), logprobs=(-0.1, -2.0), top_logprobs=({7: -0.1, 9: -3.9}, {8: -2.0, 9: -2.0}))
    assert token_confidences(seq) == [2.0, 2.0]
    assert token_confidences(replace(seq, top_logprobs=())) == [0.1, 2.0]  # no top log-probs: the sampled one's


def run(scripts: list[str], n: int, **settings) -> tuple:
    generator = Confident(scripts)
    result = make_strategy("confidence", n, window=4, **settings).run(Search(generator, task("7")))
    return result, generator.usage.generated_tokens


def test_an_easy_question_settles_after_a_few_traces() -> None:
    result, spent = run(["SO 3 + 4 = 7. THE ANSWER IS 7."], n=16, warmup=4, keep=1.0)
    assert result.answer == "7" and result.settings["traces"] == 4 and result.settings["stopped_early"] == 0
    assert spent == 4 * len("SO 3 + 4 = 7. THE ANSWER IS 7.")


def test_a_split_question_uses_the_whole_budget() -> None:
    result, _ = run(["THE ANSWER IS 7.", "THE ANSWER IS 6."], n=12, warmup=4, keep=1.0)
    assert result.settings["traces"] == 12 and result.answer in ("6", "7")


def test_a_trace_whose_window_falls_below_the_warm_up_threshold_stops_there() -> None:
    sure = "THE ANSWER IS 7."
    wavering = "THE ANSWER... hmm, maybe it is 6 after all, or not. THE ANSWER IS 6."
    # Warm-up: three sure traces and a wavering one; keeping the top 75% puts the threshold above the wavering.
    result, spent = run([sure, sure, sure, wavering], n=8, warmup=4, keep=0.75, settle=0.999, batch=4)
    stopped = [c for c in result.candidates if c.answer is None]
    assert result.answer == "7" and result.settings["stopped_early"] == 1
    assert len(stopped) == 2  # the warm-up's wavering trace has no vote, the later one was stopped early
    late = min(stopped, key=lambda c: c.tokens)
    assert late.tokens < len(wavering)  # stopped at the window where it wavered, not at its end
    assert spent < 4 * len(sure) + 4 * len(sure) + 2 * len(wavering)  # the stopped trace's rest was never drawn


def test_settings_are_checked_and_the_grid_needs_no_verifier() -> None:
    with pytest.raises(BadParameter, match="keep in"):
        make_strategy("confidence", 8, keep=0)
    GridSettings(("majority", "confidence"), (4, 16))  # no verifier needed
