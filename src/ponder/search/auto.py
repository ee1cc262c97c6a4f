"""`auto`: compute-optimal allocation at run time (Snell et al.), and the policy it follows.

A policy (made by `ponder allocate` from a calibration grid: see `ponder.eval.allocate`) holds, per predicted
difficulty bin and budget of n samples, the strategy to run. At run time the probe samples are drawn first (scored
where difficulty is predicted by the verifier's score, or compared by agreement), charged to the budget, and reused
as the first samples of a pooled strategy (majority, best-of-N), whose seeded forks they are. A strategy's
settings come with it ("beam:width=2", "revisions:length=2"), and so does its answer format
("majority:format=program"): the question is then asked that way; the probes in the calibration run's own format.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponder.errors import BadParameter
from ponder.search.base import POOLED, TREES, Sampling, Search, SearchResult
from ponder.specs import parse_spec
from ponder.stats import mean
from ponder.tasks.base import Task
from ponder.tasks.program import with_format

POLICY_VERSION = 1
POLICIES = Path(__file__).parent.parent / "policies"  # policies shipped for registry models: MODEL.json


@dataclass(frozen=True)
class Choice:
    strategy: str
    n: int
    accuracy: float  # in calibration, for this bin
    flops: float


@dataclass(frozen=True)
class Policy:
    model: str
    verifier: str | None  # None: difficulty predicted by agreement, and no cell needs a verifier
    probe: int  # samples drawn and scored to predict difficulty
    thresholds: list[float]  # predicted scores cutting the bins, descending: bin 1 above the first (easiest)
    sample_flops: float  # FLOPs of one sample (the budget unit)
    table: dict[int, dict[int, Choice]]  # bin -> budget n -> choice
    settings: dict[str, Any] = field(default_factory=dict)  # the calibration grid's (width, temperature, ...)
    calibrated_on: list[str] = field(default_factory=list)  # question ids: never evaluate the policy on these
    predictor: str = "score"  # how the probes predict difficulty: see PREDICTORS

    def bin_of(self, predicted: float) -> int:
        return 1 + sum(predicted < t for t in self.thresholds)

    def choose(self, predicted: float, n: int) -> Choice:
        levels = self.table[self.bin_of(predicted)]
        fitting = [level for level in levels if level <= n]
        return levels[max(fitting) if fitting else min(levels)]

    def save(self, path: Path) -> None:
        from ponder.jobs import write_whole

        write_whole(path, json.dumps({"version": POLICY_VERSION} | asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise BadParameter(f"cannot read an allocation policy from {path} ({e}): make one with `ponder allocate`") \
                from None
        if data.get("version") != POLICY_VERSION:
            raise BadParameter(f"{path} is a version {data.get('version')} policy; this ponder reads version "
                               f"{POLICY_VERSION}: make it again with `ponder allocate`")
        table = {int(b): {int(n): Choice(**c) for n, c in levels.items()} for b, levels in data["table"].items()}
        return cls(data["model"], data["verifier"], data["probe"], data["thresholds"], data["sample_flops"], table,
                   data.get("settings", {}), data.get("calibrated_on", []), data.get("predictor", "score"))


def shipped_policy(model: str) -> Policy:
    """The policy that ships for a registry model, or a one-line error that says how to make one."""
    path = POLICIES / f"{model}.json"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in POLICIES.glob("*.json"))) or "none yet"
        raise BadParameter(f"no allocation policy ships for {model} (policies ship for: {shipped}): make one with "
                           "`ponder eval` and `ponder allocate`, then give it with --policy")
    return Policy.load(path)


def _mean_final_score(probes: list[tuple[str | None, list[float]]]) -> float:
    finals = [scores[-1] for _, scores in probes if scores]
    return mean(finals) if finals else 0.0


def _agreement(probes: list[tuple[str | None, list[float]]]) -> float:
    answers = Counter(answer for answer, _ in probes if answer is not None)
    return answers.most_common(1)[0][1] / len(probes) if answers else 0.0


PREDICTORS = {"score": _mean_final_score, "agreement": _agreement}


def predicted_difficulty(probes: list[tuple[str | None, list[float]]], predictor: str = "score") -> float:
    """From the probe samples' (answer, step scores): high means easy. `score`: their mean final-step verifier
    score; `agreement`: the share of them that give their most common answer (no answer agrees with none)."""
    if predictor not in PREDICTORS:
        raise BadParameter(f"unknown difficulty predictor {predictor!r}: use {' or '.join(PREDICTORS)}")
    return PREDICTORS[predictor](probes)


@dataclass(frozen=True)
class AutoStrategy:
    """`--strategy auto`: probe, predict the difficulty bin, run what the policy chose for it within n."""

    policy: Policy
    n: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    name = "auto"

    def run(self, search: Search) -> SearchResult:
        from ponder.search import make_strategy

        by_score = self.policy.predictor == "score"
        if by_score:
            search.needs_verifier("the auto strategy with a policy that predicts difficulty from verifier scores")
        question = getattr(search.task, "question", None) or search.task  # the word problem, in no format yet
        search = self._asking(search, question, self.policy.settings.get("answer_format", "cot"))  # as calibrated
        k = min(self.policy.probe, self.n)
        children = search.forks(max(self.n, k))
        whole = search.whole_answers(self.sampling.whole())  # as the grid's pool drew them
        probe = search.extend(children[:k], whole)
        probe_scores = search.score(probe) if by_score else [[] for _ in probe]
        answers = [c.answer for c in search.candidates(probe, probe_scores)]
        predicted = predicted_difficulty(list(zip(answers, probe_scores)), self.policy.predictor)
        choice = self.policy.choose(predicted, self.n)
        settings = {"choice": asdict(choice), "bin": self.policy.bin_of(predicted), "predicted": predicted}
        search.progress(f"predicted difficulty bin {settings['bin']}: {choice.strategy} at n = {choice.n}")
        if choice.strategy in POOLED:
            more = search.forks(choice.n)[k:]
            extra = search.extend(more, whole) if more else []
            pool = (probe + extra)[: choice.n]
            if choice.strategy == "majority":  # reads no scores: what was not scored for the probe stays so
                scores = (probe_scores + [[] for _ in extra])[: choice.n]
            elif by_score:
                scores = (probe_scores + (search.score(extra) if extra else []))[: choice.n]
            else:  # judged now, only the samples it chooses among
                scores = search.score(pool)
            candidates = search.candidates(pool, scores)
            result = search.result(self.name, POOLED[choice.strategy](candidates, search.task.vote_key), candidates,
                                   self)
        else:
            name, own = parse_spec(choice.strategy)
            if "format" in own:  # a strategy in another answer format: the same question asked that way
                search = self._asking(search, question, own.pop("format"))
            given: dict[str, Any] = {"max_tokens": self.sampling.max_tokens}
            if name != "greedy":
                given |= {"temperature": self.sampling.temperature, "seed": self.sampling.seed}
            if "width" in self.policy.settings and name in TREES:
                given["width"] = self.policy.settings["width"]  # the grid's; a variant's own wins
            result = make_strategy(name, choice.n, **(given | own)).run(search)
            result.strategy = self.name
        result.settings = {"n": self.n, **settings}
        return result

    @staticmethod
    def _asking(search: Search, question: Task, answer_format: str) -> Search:
        """The search, its question asked in `answer_format`, on the same generator, verifier and budget."""
        task = with_format(question, answer_format)
        if task is search.task:
            return search
        return Search(search.generator, task, search.budget, search.verifier, search.aggregation, search.progress)
