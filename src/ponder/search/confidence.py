"""Confidence-weighted voting that stops early: DeepConf's online mode (Fu et al. 2025) with Adaptive-
Consistency's stopping rule (Aggarwal et al. 2023), on the policy's own log-probabilities, no verifier.

A token's confidence is minus the mean of its top-k log-probabilities (high when the model is sure); a
trace's confidence is its lowest mean over a sliding window of tokens, where a trace that loses its way
shows it. The first `warmup` traces are drawn whole and set a threshold: the confidence that keeps the
most confident `keep` share of them. Later traces grow a window at a time and are cut as soon as a
window falls below the threshold (their tokens are spent, they get no vote). After every batch of traces,
sampling stops once the vote is settled: the leading answer beats the runner-up with posterior probability
`settle` under a uniform Beta prior. The answer is the one whose kept traces' confidences sum highest.
Easy questions settle after a few traces; hard ones use the budget.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ponder.engine.protocol import Sequence
from ponder.engine.sampling import SamplingParams, find_stop
from ponder.errors import BadParameter
from ponder.search.base import Candidate, Sampling, Search, SearchResult, weighted

CUT = "cut early: a window's confidence fell below the warm-up's threshold"
BELOW = "no vote: its confidence is below the warm-up's threshold"
Trace = tuple[Sequence, float, bool]  # a sequence, its confidence, whether it was cut early


def token_confidences(seq: Sequence) -> list[float]:
    """Per generated token, high where the model is sure. DeepConf's C_i: minus the mean of the top-k
    log-probabilities (a peaked distribution has one entry near 0 and the rest far below). Tokens whose top
    log-probabilities a backend could not give are left out. A backend that gives only the sampled token's
    log-probability gets that token's probability instead: minus its log-probability, the obvious stand-in,
    ranks backwards (near 0 where the model is sure)."""
    if seq.top_logprobs:
        return [-sum(top.values()) / len(top) for top in seq.top_logprobs if top]
    if len(seq.logprobs) == len(seq.tokens):
        return [math.exp(lp) for lp in seq.logprobs]
    raise BadParameter("the confidence strategy needs per-token log-probabilities: use a backend that returns "
                       "them (native, llamacpp, vllm, or a server that gives logprobs)")


def lowest_group_confidence(confidences: list[float], window: int) -> float:
    """The lowest mean confidence over `window` consecutive tokens; the mean of all for a trace shorter than a
    window (as DeepConf's code does: a window's first few tokens alone would be too noisy to judge by)."""
    if not confidences:
        return 0.0
    if len(confidences) <= window:
        return sum(confidences) / len(confidences)
    total = sum(confidences[:window])
    lowest = total
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        lowest = min(lowest, total)
    return lowest / window


def leader_probability(leader: int, runner_up: int) -> float:
    """P(p_leader > p_runner_up) with the leader's share of the two ~ Beta(leader + 1, runner_up + 1) (a
    uniform prior): 1 - I_0.5(a, b). For integers, I_x(a, b) = P(Binomial(a + b - 1, x) >= a), so this is
    exact as a sum of binomial terms, with no special functions."""
    a, b = leader + 1, runner_up + 1
    n = a + b - 1
    return sum(math.comb(n, j) for j in range(a)) / 2 ** n


@dataclass(frozen=True)
class ConfidenceVote:
    n: int = 16  # the budget: traces at most
    warmup: int = 4  # drawn whole; they set the threshold
    # The most confident share of the warm-up that the threshold keeps (DeepConf's eta: 0.1 its "low", 0.9 its
    # "high"). A half: with 4 warm-up traces, 0.1 would keep only the single most confident one.
    keep: float = 0.5
    window: int = 32  # tokens per group (DeepConf uses 2048 for long reasoning; answers here are ~200 tokens)
    top_k: int = 20  # log-probabilities per token behind its confidence (as DeepConf's code asks for)
    settle: float = 0.95  # Adaptive-Consistency's stopping probability
    batch: int = 4  # traces drawn together after the warm-up: the engine batches them, the stop rule waits
    sampling: Sampling = field(default_factory=Sampling)
    name = "confidence"

    def __post_init__(self) -> None:
        if not (1 <= self.warmup and 1 <= self.n and 0 < self.keep <= 1 and self.window >= 1 and self.batch >= 1
                and 0.5 < self.settle <= 1 and 1 <= self.top_k <= 20):
            raise BadParameter("confidence needs n, warmup, window, batch >= 1, keep in (0, 1], settle in (0.5, 1] "
                               "and top_k in [1, 20]")

    def run(self, search: Search) -> SearchResult:
        params = search.whole_answers(replace(self.sampling.whole(), top_logprobs=self.top_k))
        warm = search.sample(min(self.warmup, self.n), params)
        traces: list[Trace] = [(seq, self._confidence(seq), False) for seq in warm]
        # numpy's default quantile: linear between neighbours
        threshold = float(np.quantile([confidence for _, confidence, _ in traces], 1 - self.keep)) if traces else 0.0
        while len(traces) < self.n and not search.budget.exhausted and not self._settled(search, traces, threshold):
            batch = search.forks(min(self.n, len(traces) + self.batch))[len(traces):]  # seeds as `sample` gives them
            traces += [(seq, self._confidence(seq), cut) for seq, cut in self._grow(search, batch, params, threshold)]
            search.progress(f"{len(traces)} of {self.n} samples, {sum(t[2] for t in traces)} cut early")
        candidates = []
        for seq, confidence, cut in traces:
            kept = not cut and confidence >= threshold
            candidates.append(Candidate(seq.text, search.task.extract(seq.text) if kept else None, [], confidence,
                                        len(seq.tokens), None if kept else CUT if cut else BELOW))
        key = search.task.vote_key
        result = search.result(self.name, weighted(candidates, key), candidates, self)
        result.settings |= {"samples": len(traces), "votes": sum(key(c.answer) is not None for c in candidates),
                            "stopped_early": sum(t[2] for t in traces), "threshold": threshold}
        return result

    def _confidence(self, seq: Sequence) -> float:
        return lowest_group_confidence(token_confidences(seq), self.window)

    def _grow(self, search: Search, batch: list[Sequence], params: SamplingParams,
              threshold: float) -> list[tuple[Sequence, bool]]:
        """Grow traces a window at a time, together; one whose lowest window falls below the threshold before it
        is finished is cut there. (sequence, cut early) per trace, in order."""
        out = list(batch)
        cut = [False] * len(batch)
        live = list(range(len(batch)))
        while live:  # the budget is looked at between batches, as `Search.sample` looks between rounds
            longest = max(len(out[i].tokens) for i in live)
            chunk = replace(params, max_tokens=min(self.window, params.max_tokens - longest))
            still = []
            for i, seq in zip(live, search.extend([out[i] for i in live], chunk)):
                before, out[i] = out[i], seq
                if _finished(before, seq, params):
                    continue
                if len(seq.tokens) >= self.window and self._confidence(seq) < threshold:
                    cut[i] = True
                else:
                    still.append(i)
            live = still
        return list(zip(out, cut))

    def _settled(self, search: Search, traces: list[Trace], threshold: float) -> bool:
        """Adaptive-Consistency's rule on the counts of the kept traces' answers (as its paper counts them)."""
        key, extract = search.task.vote_key, search.task.extract
        votes = Counter(k for seq, confidence, cut in traces
                        if not cut and confidence >= threshold and (k := key(extract(seq.text))) is not None)
        top = votes.most_common(2) + [("", 0)] * 2
        return top[0][1] > 0 and leader_probability(top[0][1], top[1][1]) >= self.settle


def _finished(before: Sequence, seq: Sequence, params: SamplingParams) -> bool:
    """Whether a trace grown from `before` to `seq` is whole: ended by the model, a stop string or the token
    limit, or grew no more. A stop string split across two calls is one the backend cannot see (it looks in
    each call's new text only), so it is looked for here."""
    if seq.done or seq.finish_reason == "stop" or len(seq.tokens) >= params.max_tokens:
        return True
    if len(seq.tokens) == len(before.tokens):
        return True
    overlap = max((len(s) for s in params.stop), default=1) - 1
    return find_stop(seq.text, params.stop, max(0, len(before.text) - overlap)) is not None

