"""A generative verifier: a language model judges each step; the score is its P("Yes").

The judge sees the question and the solution up to a step and is asked whether that step is right;
P(Yes) / (P(Yes) + P(No)) over its first token (from the top log-probabilities) is the step's score.
The judge can be the policy itself (no second model in memory) or any other generator. Every step
prefix is a separate prompt, and successive prefixes share their past, which the engine reuses.
Scores are remembered per (task, prefix), so beam search does not pay twice for the same steps.
"""

from __future__ import annotations

import math

from ponder.budget import Budget
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.verify.base import STEP_DELIMITER, split_steps

JUDGE_SYSTEM = "You check solutions to problems, one step at a time. Answer with Yes or No only."
JUDGE_QUESTION = "Is the last step of this solution correct? Answer Yes or No."


class GenerativeVerifier:
    name = "generative"

    def __init__(self, judge: Generator, steps: str = "all"):
        """steps: "all" scores every step (a process verifier); "last" only the whole solution (outcome)."""
        if steps not in ("all", "last"):
            raise BadParameter(f"steps must be 'all' or 'last', not {steps!r}")
        self.judge, self.steps = judge, steps
        self.memo: dict[tuple[str, str], float] = {}
        self._yes_no: dict[int, bool] = {}  # token id -> is a Yes (True) or a No (False); absent: neither

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        question = next(m["content"] for m in reversed(task.messages) if m["role"] == "user")
        prefixes = []
        for c in candidates:
            steps = split_steps(c.text)
            ends = range(1, len(steps) + 1) if self.steps == "all" else [len(steps)]
            prefixes.append([STEP_DELIMITER.join(steps[:k]) for k in ends])
        todo = sorted({p for ps in prefixes for p in ps if (task.id, p) not in self.memo})
        if todo:
            before = self.judge.usage.snapshot()
            prompts = [Sequence(tuple(self.judge.encode_chat(self._messages(question, p)))) for p in todo]
            judged = self.judge.extend(prompts, SamplingParams(max_tokens=1, top_logprobs=20))
            spent = self.judge.usage - before
            budget.charge_verifier(spent.prompt_tokens_computed + spent.generated_tokens, self.judge.info.n_params)
            for prefix, verdict in zip(todo, judged):
                self.memo[(task.id, prefix)] = self._p_yes(verdict)
        scores = [[self.memo[(task.id, p)] for p in ps] for ps in prefixes]
        if self.steps == "last":  # an outcome score stands for every step
            scores = [s * len(split_steps(c.text)) for s, c in zip(scores, candidates)]
        return scores

    @staticmethod
    def _messages(question: str, solution: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": f"Problem:\n{question}\n\nSolution:\n{solution}\n\n{JUDGE_QUESTION}"}]

    def _p_yes(self, verdict: Sequence) -> float:
        mass = {True: 0.0, False: 0.0}
        for token, logprob in (verdict.top_logprobs[0] if verdict.top_logprobs else {}).items():
            if (kind := self._kind(token)) is not None:
                mass[kind] += math.exp(logprob)
        total = mass[True] + mass[False]
        return mass[True] / total if total > 0 else 0.5  # the judge said neither: no information

    def _kind(self, token: int) -> bool | None:
        if token not in self._yes_no:
            word = self.judge.decode((token,)).strip().lower()
            self._yes_no[token] = {"yes": True, "no": False}.get(word)  # type: ignore[assignment]
        return self._yes_no[token]
