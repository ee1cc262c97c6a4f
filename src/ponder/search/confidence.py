"""Confidence-weighted voting that stops early: DeepConf's online mode (Fu et al. 2025) with Adaptive-
Consistency's stopping rule (Aggarwal et al. 2023), on the policy's own log-probabilities, no verifier.

A token's confidence is minus the mean of its top-k log-probabilities (high when the model is sure); a
trace's confidence is its lowest mean over a sliding window of tokens, where a trace that loses its way
shows it. The first `warmup` traces are drawn whole and set a threshold: the confidence that keeps the
most confident `keep` share of them. Later traces grow a window at a time and are stopped as soon as a
window falls below the threshold (their tokens are spent, they get no vote). After every finished trace,
sampling stops once the vote is settled: the leading answer beats the runner-up with posterior probability
`settle` under a uniform Beta prior. The answer is the one whose kept traces' confidences sum highest.
Easy questions settle after a few traces; hard ones use the budget.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from ponder.engine.protocol import Sequence
from ponder.engine.sampling import SamplingParams
from ponder.search.base import Candidate, Sampling, Search, SearchResult, weighted


def token_confidences(seq: Sequence) -> list[float]:
    """Per generated token: minus the mean of its top log-probabilities (DeepConf's C_i); where the backend
    gave none, minus the sampled token's own log-probability (a coarser measure of the same thing)."""
    if len(seq.top_logprobs) == len(seq.tokens) and all(seq.top_logprobs):
        return [-sum(top.values()) / len(top) for top in seq.top_logprobs]
    return [-lp for lp in seq.logprobs]


def lowest_group_confidence(confidences: list[float], window: int) -> float:
    """The lowest mean confidence over `window` consecutive tokens (over all of them for a shorter trace)."""
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
    """P(p_leader > p_runner_up) under Beta(leader + 1, runner_up + 1) on the leader's share of the two:
    1 - I_0.5(a, b), exact for integer votes (a sum of binomial terms)."""
    a, b = leader + 1, runner_up + 1
    n = a + b - 1
    return sum(math.comb(n, j) for j in range(a)) / 2 ** n


@dataclass(frozen=True)
class ConfidenceVote:
    n: int = 16  # the budget: traces at most
    warmup: int = 4  # drawn whole; they set the threshold
    keep: float = 0.5  # the most confident share of the warm-up that the threshold keeps (DeepConf's eta)
    window: int = 32  # tokens per group (DeepConf uses 2048 for long reasoning; answers here are ~200 tokens)
    top_k: int = 5  # log-probabilities per token behind its confidence
    settle: float = 0.95  # Adaptive-Consistency's stopping probability
    batch: int = 4  # traces drawn together after the warm-up (the engine batches them)
    sampling: Sampling = field(default_factory=Sampling)
    name = "confidence"

    def __post_init__(self) -> None:
        from ponder.errors import BadParameter

        if not (1 <= self.warmup and 1 <= self.n and 0 < self.keep <= 1 and self.window >= 1 and self.batch >= 1
                and 0.5 < self.settle <= 1 and 1 <= self.top_k <= 20):
            raise BadParameter("confidence needs n, warmup, window, batch >= 1, keep in (0, 1], settle in (0.5, 1] "
                               "and top_k in [1, 20]")

    def run(self, search: Search) -> SearchResult:
        params = search.whole_answers(replace(self.sampling.whole(), top_logprobs=self.top_k))
        warm = search.sample(min(self.warmup, self.n), params)
        scores = [self._confidence(seq) for seq in warm]
        threshold = _percentile(scores, 1 - self.keep)
        traces = list(zip(warm, scores, [False] * len(warm)))  # (sequence, confidence, stopped early)
        drawn = len(warm)
        while drawn < self.n and not self._settled(search, traces, threshold):
            batch = search.forks(min(self.n, drawn + self.batch))[drawn:]
            drawn += len(batch)
            traces += [(seq, self._confidence(seq), stopped)
                       for seq, stopped in self._grow(search, batch, params, threshold)]
        candidates = []
        for seq, confidence, stopped in traces:
            answer = None if stopped or confidence < threshold else search.task.extract(seq.text)
            candidates.append(Candidate(seq.text, answer, [], confidence, len(seq.tokens)))
        result = search.result(self.name, weighted(candidates, search.task.vote_key), candidates, self)
        result.settings |= {"traces": len(traces), "stopped_early": sum(t[2] for t in traces),
                            "threshold": threshold}
        return result

    def _confidence(self, seq: Sequence) -> float:
        return lowest_group_confidence(token_confidences(seq), self.window)

    def _grow(self, search: Search, batch: list[Sequence], params: SamplingParams,
              threshold: float) -> list[tuple[Sequence, bool]]:
        """Grow traces a window at a time; one whose window confidence falls below the threshold stops there.
        (sequence, stopped early) per trace, in order."""
        out = {i: (seq, False) for i, seq in enumerate(batch)}
        live = list(out)
        while live:  # live traces all have the same length: each round adds a window to every one
            left = params.max_tokens - len(out[live[0]][0].tokens)
            grown = search.extend([out[i][0] for i in live], replace(params, max_tokens=min(self.window, left)))
            still = []
            for i, seq in zip(live, grown):
                low = len(seq.tokens) >= self.window and self._confidence(seq) < threshold
                out[i] = (seq, low)
                if not (low or seq.done or seq.finish_reason == "stop" or len(seq.tokens) >= params.max_tokens):
                    still.append(i)
            live = still
        return [out[i] for i in range(len(batch))]

    def _settled(self, search: Search, traces: list[tuple[Sequence, float, bool]], threshold: float) -> bool:
        votes = Counter(key for seq, confidence, stopped in traces
                        if not stopped and confidence >= threshold
                        and (key := search.task.vote_key(search.task.extract(seq.text))) is not None)
        top = votes.most_common(2) + [("", 0)] * 2
        return top[0][1] > 0 and leader_probability(top[0][1], top[1][1]) >= self.settle


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile of values (linear between neighbours); q = 0 is the lowest."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
