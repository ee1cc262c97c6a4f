"""Monte Carlo step labels: from each step of the policy's own solutions, k rollouts; the label is
the fraction that reach the right answer (Math-Shepherd's soft estimate, as Snell et al. used).

A question's samples are drawn together, then every rollout of every step prefix in one batched
`extend`: each prefix is a fork of its sample, so the engine computes it once for its k rollouts
(and the prompt once for all). Seeds follow the question's sample and step, never the batch or the
order of the run, so a question labelled again gives the same labels. The last step's label is the
sample's own correctness.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from ponder.budget import Budget
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.prm.features import encode_states, step_states
from ponder.tasks import training_tasks
from ponder.tasks.base import Task
from ponder.verify.base import step_token_ends


@dataclass(frozen=True)
class LabelSettings:
    samples: int = 4  # solutions per question
    rollouts: int = 4  # completions from each step prefix
    temperature: float = 0.4  # the policy's search temperature: label the solutions it will be asked to score
    max_tokens: int = 512  # per sample, and per rollout
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "rollouts", "max_tokens"):
            if getattr(self, name) < 1:
                raise BadParameter(f"{name} must be at least 1, not {getattr(self, name)}")


def label_question(generator: Generator, task: Task, settings: LabelSettings) -> dict[str, Any]:
    """The question's samples, each with its step ends (token indices), step labels and rollout outcomes."""
    budget, start = Budget(), time.perf_counter()
    params = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_tokens, seed=settings.seed)
    before = generator.usage.snapshot()
    prompt = tuple(generator.encode_chat([dict(m) for m in task.messages]))
    samples = generator.extend(Sequence(prompt).fork(settings.samples), params)
    ends = [step_token_ends(generator.decode, s.tokens) for s in samples]
    prefixes = [_prefix(generator, s, end) for s, sample_ends in zip(samples, ends) for end in sample_ends[:-1]]
    rollouts = generator.extend([child for p in prefixes for child in p.fork(settings.rollouts)], params)
    budget.charge_generation(generator.usage - before, generator.info.n_params)
    outcomes = iter([task.is_correct(r.text) for r in rollouts])
    records = []
    for sample, sample_ends in zip(samples, ends):
        correct = task.is_correct(sample.text)
        won = [[next(outcomes) for _ in range(settings.rollouts)] for _ in sample_ends[:-1]]
        records.append({"tokens": list(sample.tokens), "text": sample.text, "answer": task.extract(sample.text),
                        "correct": correct, "step_ends": sample_ends,
                        "labels": [sum(w) / len(w) for w in won] + ([float(correct)] if sample_ends else []),
                        "rollouts_correct": won})
        if hasattr(generator, "states") and sample_ends:  # the solution is still cached: about a token a step
            computed = generator.usage.prompt_tokens_computed
            records[-1]["states"] = encode_states(step_states(generator, prompt, sample.tokens, sample_ends))
            budget.charge_verifier(generator.usage.prompt_tokens_computed - computed, generator.info.n_params)
    spend = budget.spent.to_dict() | {"seconds": time.perf_counter() - start}
    return {"id": task.id, "prompt": list(prompt), "samples": records, "spend": spend, "settings": asdict(settings)}


def _prefix(generator: Generator, sample: Sequence, end: int) -> Sequence:
    """The sample cut after token `end`, ready to be continued (its own branch: rollouts seed apart from it)."""
    tokens = sample.tokens[: end + 1]
    return replace(sample, tokens=tokens, text=generator.decode(tokens), logprobs=sample.logprobs[: end + 1],
                   top_logprobs=sample.top_logprobs[: end + 1], values=sample.values[: end + 1],
                   finish_reason=None, stop=None, done=False)


@dataclass(frozen=True)
class LabelJob:
    """One question's labels by key ("SPEC#TASK_ID"), for `jobs.run_all`: picklable, so Ray workers can
    run it; each process opens the model once."""

    model: str
    backend: str
    size: int
    seed: int
    settings: LabelSettings

    def keys(self, specs: list[str]) -> list[str]:
        return [f"{spec}#{task.id}" for spec in specs for task in self.tasks(spec)]

    def tasks(self, spec: str) -> list[Task]:
        return training_tasks(spec, self.size, self.seed)

    def __call__(self, key: str) -> dict[str, Any]:
        from ponder.engine.backends import shared_generator

        spec, _, task_id = key.rpartition("#")
        task = next(t for t in self.tasks(spec) if t.id == task_id)
        return label_question(shared_generator(self.model, self.backend), task, self.settings)
