"""What every strategy shares: the run context that meters each call, candidates, results, the tree.

A strategy sees one `Search`: the task's prompt on a generator, an optional verifier, and one
`Budget` that every generator and verifier call is charged to. It returns a `SearchResult`: the
chosen answer, every candidate with its scores, the search tree where there is one, and the spend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ponder.budget import Budget, Spend
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.tasks.answers import vote_key
from ponder.tasks.base import Task
from ponder.verify.base import STEP_DELIMITER, Verifier, aggregate


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of a strategy (defaults measured for the 0.5B model: see the README)."""

    temperature: float = 0.4
    top_p: float = 1.0
    max_tokens: int = 512  # per candidate, all steps together
    step_tokens: int = 128  # per step, for the step-wise strategies
    seed: int | None = 0

    def __post_init__(self) -> None:  # bad settings fail here, before any model is loaded
        self.whole()
        self.step()

    def whole(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=self.seed)

    def step(self, temperature: float | None = None) -> SamplingParams:
        return SamplingParams(temperature=self.temperature if temperature is None else temperature,
                              top_p=self.top_p, max_tokens=self.step_tokens, seed=self.seed, stop=(STEP_DELIMITER,))


@dataclass
class Candidate:
    text: str
    answer: str | None
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0  # the verifier's aggregate, or the vote share where there is no verifier
    tokens: int = 0
    reason: str | None = None  # why it has no answer, where the task can say (a program's error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Node:
    """One step in a search tree: kept for expansion, pruned, or the end of a candidate."""

    id: int
    parent: int | None
    depth: int
    text: str
    score: float | None = None
    state: str = "open"  # open, kept, pruned, finished

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    strategy: str
    answer: str | None
    candidates: list[Candidate]
    spend: Spend
    settings: dict[str, Any] = field(default_factory=dict)
    tree: list[Node] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "answer": self.answer, "settings": self.settings,
                "candidates": [c.to_dict() for c in self.candidates], "spend": self.spend.to_dict(),
                "tree": None if self.tree is None else [n.to_dict() for n in self.tree]}


class Search:
    """One task on one generator, with a verifier and a budget: every call is metered."""

    def __init__(self, generator: Generator, task: Task, budget: Budget | None = None,
                 verifier: Verifier | None = None, aggregation: str = "last",
                 progress: Callable[[str], None] | None = None):
        self.generator, self.task, self.verifier, self.aggregation = generator, task, verifier, aggregation
        self.budget = budget or Budget()
        self.progress = progress or (lambda message: None)
        # Sample i of `sample` gets prompt i % len(prompts) (a mixed-format task asks two ways); the rest of
        # the search (trees, revisions, greedy) uses the first.
        self.prompts = [tuple(generator.encode_chat([dict(m) for m in messages])) for messages in task.prompts()]
        self.prompt = self.prompts[0]

    def needs_verifier(self, what: str) -> Verifier:
        """The verifier, or a clear error naming `what` needs it."""
        if self.verifier is None:
            raise BadParameter(f"{what} needs a verifier: choose one with --verifier")
        return self.verifier

    # --- metered calls -------------------------------------------------------------------------

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        before = self.generator.usage.snapshot()
        grown = self.generator.extend(sequences, params)
        self.budget.charge_generation(self.generator.usage - before, self.generator.info.n_params)
        return grown

    def sample(self, n: int, params: SamplingParams, prompt: tuple[int, ...] | None = None) -> list[Sequence]:
        """n completions of the task's prompt (or another), in rounds when the budget has limits; they
        end where the task says a whole answer ends (a code task: its code block closed)."""
        params = self.whole_answers(params)
        children = self.forks(n, prompt)
        if not self.budget.has_limits:
            return self.extend(children, params)
        out: list[Sequence] = []
        for start in range(0, n, max(1, n // 4)):
            if self.budget.exhausted:
                break
            out += self.extend(children[start:start + max(1, n // 4)], params)
        return out

    def forks(self, n: int, prompt: tuple[int, ...] | None = None) -> list[Sequence]:
        """The first n samples to draw, unextended: child i of the task's prompt i % len(prompts) (or of
        `prompt`), seeded by i as `Sequence.fork` seeds its children."""
        prompts = [prompt] if prompt else self.prompts
        return [Sequence(prompts[i % len(prompts)], branch=(i,)) for i in range(n)]

    def whole_answers(self, params: SamplingParams) -> SamplingParams:
        """params that also stop where the task says a whole answer ends."""
        extra = tuple(s for s in self.task.answer_ends if s not in params.stop)
        return replace(params, stop=params.stop + extra) if extra else params

    def score(self, sequences: list[Sequence]) -> list[list[float]]:
        return self.needs_verifier("scoring candidates").score(self.task, sequences, self.budget) if sequences else []

    # --- candidates and answers ----------------------------------------------------------------

    def candidates(self, sequences: list[Sequence], step_scores: list[list[float]] | None = None) -> list[Candidate]:
        out = []
        for i, seq in enumerate(sequences):
            steps = step_scores[i] if step_scores is not None else []
            out.append(Candidate(seq.text, self.task.extract(seq.text), steps,
                                 aggregate(steps, self.aggregation) if steps else 0.0, len(seq.tokens)))
        return out

    def result(self, strategy: str, answer: str | None, candidates: list[Candidate], settings: Any,
               tree: list[Node] | None = None) -> SearchResult:
        ranked = sorted(candidates, key=lambda c: -c.score)
        for c in ranked:
            if c.answer is None and c.reason is None:
                c.reason = self.task.no_answer_reason(c.text)
        spend = Spend(**self.budget.spent.to_dict())
        return SearchResult(strategy, answer, ranked, spend, asdict(settings), tree)


def check_width(strategy: str, n: int, width: int) -> None:
    """Tree strategies keep n / width nodes and fork each `width` ways: n must divide evenly."""
    if n < 1 or width < 1 or n % width:
        raise BadParameter(f"{strategy} needs n a multiple of width (n={n}, width={width})")


Key = Callable[[str | None], str | None]  # an answer -> the group it votes in (None: no vote)


def majority(candidates: list[Candidate], key: Key = vote_key) -> str | None:
    """The most common answer, grouped by `key` (the earliest among equals): the answer of the group's
    first candidate. None when no candidate has one."""
    groups = _grouped(candidates, key)
    if not groups:
        return None
    top = max(len(members) for members in groups.values())
    return next(members[0].answer for members in groups.values() if len(members) == top)


def weighted(candidates: list[Candidate], key: Key = vote_key) -> str | None:
    """The answer whose group has the largest sum of candidate scores (weighted best-of-N)."""
    groups = _grouped(candidates, key)
    if not groups:
        return None
    return max(groups.values(), key=lambda members: sum(c.score for c in members))[0].answer


def best(candidates: list[Candidate], key: Key = vote_key) -> str | None:
    """The answer of the highest-scoring candidate that has one (`key` only tells which have one)."""
    answered = [c for c in candidates if key(c.answer) is not None]
    return max(answered, key=lambda c: c.score).answer if answered else None


def _grouped(candidates: list[Candidate], key: Key) -> dict[str, list[Candidate]]:
    """The candidates with a vote, by group, in order of each group's first candidate."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if (k := key(c.answer)) is not None:
            groups.setdefault(k, []).append(c)
    return groups


POOLED = {"majority": majority, "bon": best, "weighted_bon": weighted}  # read off one pool of samples
TREES = ("beam", "lookahead", "dvts")  # n must be a multiple of the width
