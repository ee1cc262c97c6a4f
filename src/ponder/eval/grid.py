"""One grid item: a question under one seed, every strategy at every budget, with its spend.

Samples are reused where the statistics allow, as the literature does: majority vote, best-of-N and
weighted best-of-N at every budget n read the first n of one seeded pool of max(budgets) samples,
scored once. Seeds follow each sample's fork index, so those first n are exactly the samples a run
with budget n would draw: the reuse changes no result, only the cost of the grid. Each budget's
spend is what its own n samples cost: the prompt once, their generated tokens, and their share of
the verifier's work. Tree strategies (beam, lookahead, DVTS) and revisions run once per budget, each
variant of them apart ("beam:width=2", "revisions:length=2"): an allocation policy then chooses among
their settings too.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any

from ponder.budget import Budget
from ponder.engine.protocol import Generator
from ponder.errors import BadParameter
from ponder.search import STRATEGIES, make_strategy, solve
from ponder.search.base import POOLED, TREES, Candidate, Sampling, Search
from ponder.search.revise import Revisions
from ponder.specs import parse_spec
from ponder.tasks.base import Task
from ponder.tasks.program import FORMATS, with_format
from ponder.verify import make_verifier, shared_verifier
from ponder.verify.base import Verifier


@dataclass(frozen=True)
class GridSettings:
    strategies: tuple[str, ...]
    budgets: tuple[int, ...]
    verifier: str | None = None
    temperature: float = 0.4
    max_tokens: int = 512
    width: int = 4
    policy: str | None = None  # for auto: an allocation policy's path (None: the one shipped for the model)
    answer_format: str = "cot"  # cot, or program: every strategy asks for programs and votes on what they print

    def __post_init__(self) -> None:
        for spec in self.strategies:
            name, own = parse_spec(spec)
            if name not in STRATEGIES and name != "auto":
                raise BadParameter(f"unknown strategy {name!r}: use some of {', '.join(STRATEGIES)}, auto")
            if own:
                if name in ("greedy", "auto", *POOLED):
                    raise BadParameter(f"{spec}: only the tree strategies, revisions and confidence take settings "
                                       "in a grid (the pooled ones read one pool of samples drawn with the grid's)")
                make_strategy(spec, self.step_of(spec))  # bad settings fail now
        if not self.budgets or min(self.budgets) < 1:
            raise BadParameter(f"budgets must be positive numbers of samples, not {list(self.budgets)}")
        needs = [s for s in self.strategies
                 if parse_spec(s)[0] not in ("greedy", "majority", "revisions", "auto", "confidence")]
        if needs and self.verifier is None:
            raise BadParameter(f"{', '.join(needs)} need a verifier: give one with --verifier")
        Sampling(temperature=self.temperature, max_tokens=self.max_tokens)  # bad values fail before a model loads
        if self.answer_format not in FORMATS:
            raise BadParameter(f"unknown format {self.answer_format!r}: use one of {', '.join(FORMATS)}")

    def step_of(self, spec: str) -> int:
        """What a strategy's budget must be a multiple of: a tree's children per kept beam (its own setting,
        else the grid's), revisions' attempts per chain."""
        name, own = parse_spec(spec)
        if name in TREES:
            return own.get("width", self.width)
        return own.get("length", Revisions.length) if name == "revisions" else 1

    def to_dict(self) -> dict[str, Any]:
        """As a run records it (no policy key unless auto has one, no format unless programs: the stores of
        runs from before these settings still resume)."""
        defaults = {"policy": None, "answer_format": "cot"}
        return {k: v for k, v in asdict(self).items() if k not in defaults or v != defaults[k]}

    def runs(self) -> list[str]:
        """The grid's cells, as result keys ("beam@16"); budgets a strategy cannot split (a tree's width,
        revisions' length) are left out."""
        cells = ["greedy@1"] if "greedy" in self.strategies else []
        for name in self.strategies:
            if name == "greedy":
                continue
            cells += [f"{name}@{n}" for n in self.budgets if n % self.step_of(name) == 0]
        if any(s in POOLED for s in self.strategies):
            cells += [f"pass@{n}" for n in self.budgets]
        return cells


def run_item(generator: Generator, task: Task, seed: int, grid: GridSettings,
             verifier: Verifier | None = None) -> dict[str, Any]:
    """Every cell of the grid for one question and seed; the pool's samples kept for later analysis."""
    if verifier is None and grid.verifier is not None:
        verifier = make_verifier(grid.verifier, generator)
    sampling = Sampling(temperature=grid.temperature, max_tokens=grid.max_tokens, seed=seed)
    results: dict[str, dict[str, Any]] = {}
    pool: list[dict[str, Any]] = []
    if "greedy" in grid.strategies and seed == 0:  # greedy is the same under every seed: run it once
        start = time.perf_counter()
        run = make_strategy("greedy", max_tokens=grid.max_tokens).run(Search(generator, task, Budget()))
        results["greedy@1"] = _entry(task, run.answer, run.spend.to_dict(), time.perf_counter() - start)
        if run.candidates:  # its text, for what reads answers later (does a trained model revise itself?)
            results["greedy@1"]["text"] = run.candidates[0].text
    if pooled := [s for s in grid.strategies if s in POOLED]:
        pool, cells = _pooled(generator, task, grid, pooled, sampling, verifier)
        results |= cells
    runs = set(grid.runs())
    for name in grid.strategies:
        if name == "greedy" or name in POOLED:
            continue
        for n in grid.budgets:
            if f"{name}@{n}" not in runs:
                continue
            settings: dict[str, Any] = {"temperature": grid.temperature, "max_tokens": grid.max_tokens, "seed": seed}
            if parse_spec(name)[0] in TREES:
                settings["width"] = grid.width  # a variant's own width wins (make_strategy)
            start = time.perf_counter()
            if name == "auto":  # judged by the grid's verifier if it has one, else by the policy's own
                run = solve(generator, task, "auto", n, verifier, Budget(), policy=grid.policy, **settings)
            else:
                run = make_strategy(name, n, **settings).run(Search(generator, task, Budget(), verifier))
            results[f"{name}@{n}"] = _entry(task, run.answer, run.spend.to_dict(), time.perf_counter() - start)
            if "samples" in run.settings:  # a strategy that stops early (confidence): the samples it drew
                results[f"{name}@{n}"]["samples"] = run.settings["samples"]
            if run.tree:  # a tree strategy's tree, for the report's page of each question
                results[f"{name}@{n}"]["tree"] = [node.to_dict() for node in run.tree]
    return {"question": task.id, "seed": seed, "difficulty": task.difficulty, "pool": pool, "results": results,
            "grid": grid.to_dict()}


def _pooled(generator: Generator, task: Task, grid: GridSettings, strategies: list[str], sampling: Sampling,
            verifier: Verifier | None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    search = Search(generator, task, Budget(), verifier)
    start = time.perf_counter()
    samples = search.sample(max(grid.budgets), sampling.whole())
    prompt, sampling_seconds = search.budget.spent.prompt_tokens_computed, time.perf_counter() - start
    before = (search.budget.spent.verifier_tokens, search.budget.spent.flops)
    scored = any(s != "majority" for s in strategies)
    candidates = search.candidates(samples, search.score(samples) if scored else None)
    judging = (search.budget.spent.verifier_tokens - before[0], search.budget.spent.flops - before[1],
               time.perf_counter() - start - sampling_seconds)
    lengths = [len(s.tokens) for s in samples]
    cells = {}
    for n in grid.budgets:
        first, generated, part = candidates[:n], sum(lengths[:n]), n / len(samples)
        drawn = {"tokens": prompt + generated, "flops": 2.0 * generator.info.n_params * (prompt + generated),
                 "seconds": sampling_seconds * generated / max(1, sum(lengths))}
        judged = {"tokens": drawn["tokens"] + judging[0] * part, "flops": drawn["flops"] + judging[1] * part,
                  "seconds": drawn["seconds"] + judging[2] * part}
        for name in strategies:
            answer = POOLED[name](first, task.vote_key)
            cells[f"{name}@{n}"] = {"answer": answer, "correct": task.check(answer)} | (
                drawn if name == "majority" else judged)
        cells[f"pass@{n}"] = {"answer": None, "correct": any(task.check(c.answer) for c in first)} | drawn
    return [_sample_record(task, c) for c in candidates], cells


def _entry(task: Task, answer: str | None, spend: dict[str, float], seconds: float) -> dict[str, Any]:
    tokens = spend["generated_tokens"] + spend["prompt_tokens_computed"] + spend["verifier_tokens"]
    return {"answer": answer, "correct": task.check(answer), "tokens": tokens, "flops": spend["flops"],
            "seconds": seconds}


def _sample_record(task: Task, c: Candidate) -> dict[str, Any]:
    return {"text": c.text, "answer": c.answer, "correct": task.check(c.answer), "step_scores": c.step_scores,
            "tokens": c.tokens}


@dataclass(frozen=True)
class EvalJob:
    """The grid item for a key ("TASK_ID#SEED"), for `jobs.run_all`: picklable, so Ray workers can run it;
    each process opens its model and verifier once."""

    model: str
    backend: str
    tasks: str
    size: int
    task_seed: int
    grid: GridSettings
    # Items run at once in threads, their calls batched by one engine (a Scheduler). Not a setting of the run: the
    # answers are the same (ponder's kernels and seeded sampling are batch-invariant; tested), only the seconds
    # are wall times shared with the other items in flight.
    concurrent: int = 1

    def settings(self, seeds: int) -> dict[str, Any]:
        """What the run's store records, and checks when the run is resumed."""
        return {"model": self.model, "backend": self.backend, "tasks": self.tasks, "size": self.size,
                "task_seed": self.task_seed, "seeds": seeds} | self.grid.to_dict()

    def keys(self, seeds: int) -> list[str]:
        return [f"{task.id}#{seed}" for task in _tasks(self.tasks, self.size, self.task_seed, self.grid.answer_format)
                for seed in range(seeds)]

    def __call__(self, key: str) -> dict[str, Any]:
        from ponder.engine.backends import OPENING, shared_engine

        task_id, _, seed = key.rpartition("#")
        tasks = _tasks(self.tasks, self.size, self.task_seed, self.grid.answer_format)
        task = next(t for t in tasks if t.id == task_id)
        threads, name = self.concurrent > 1, self.grid.verifier
        with OPENING:  # items at once: the first opens the model and verifier, the others wait for them
            generator = shared_engine(self.model, self.backend, threads)
            verifier = shared_verifier(name, self.model, self.backend, threads) if name else None
        return run_item(generator, task, int(seed), self.grid, verifier)


@functools.cache
def _tasks(spec: str, size: int, seed: int, answer_format: str = "cot") -> list[Task]:
    from ponder.tasks import load_tasks

    return [with_format(task, answer_format) for task in load_tasks(spec, size, seed)]
