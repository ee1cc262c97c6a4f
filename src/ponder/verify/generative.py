"""A generative verifier: a language model judges each step; the score is its P("Yes").

The judge is asked in the task's own conversation: the task's messages, the solution so far as the
assistant's turn, then a user turn asking whether its last step is right. P(Yes) / (P(Yes) + P(No))
over the judge's first token (from the top log-probabilities) is the step's score. When the judge is
the policy itself (the default: no second model in memory), everything up to that last question is
what the policy has just computed, so the engine's prefix cache serves it and the judge computes only
the question: on a gsm_symbolic question, 385 new tokens for 16 candidates instead of 6,538 when the
solution was quoted inside a separate judging prompt (4 s instead of 175 s). Scores are remembered
per (task, prefix), so beam search does not pay twice for the same steps.
"""

from __future__ import annotations

import math

from ponder.budget import Budget
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.tasks.base import Task
from ponder.verify.base import STEP_DELIMITER, split_steps

JUDGE_QUESTION = "Is the last step of your solution correct? Answer with Yes or No only."


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
        prefixes, counts = [], []
        for c in candidates:
            steps = split_steps(c.text)
            ends = range(1, len(steps) + 1) if self.steps == "all" else [len(steps)]
            prefixes.append([STEP_DELIMITER.join(steps[:k]) for k in ends])
            counts.append(len(steps))
        todo = sorted({p for ps in prefixes for p in ps if (task.id, p) not in self.memo})
        if todo:
            before = self.judge.usage.snapshot()
            prompts = [Sequence(tuple(self.judge.encode_chat(self.messages(task, p)))) for p in todo]
            judged = self.judge.extend(prompts, SamplingParams(max_tokens=1, top_logprobs=20))
            spent = self.judge.usage - before
            budget.charge_verifier(spent.prompt_tokens_computed + spent.generated_tokens, self.judge.info.n_params)
            for prefix, verdict in zip(todo, judged):
                self.memo[(task.id, prefix)] = self._p_yes(verdict)
        scores = [[self.memo[(task.id, p)] for p in ps] for ps in prefixes]
        if self.steps == "last":  # an outcome score stands for every step
            scores = [s * n for s, n in zip(scores, counts)]
        return scores

    @staticmethod
    def messages(task: Task, solution: str) -> list[dict[str, str]]:
        """The task's conversation, the solution as the assistant's answer, and the judging question."""
        return [*task.messages, {"role": "assistant", "content": solution}, {"role": "user", "content": JUDGE_QUESTION}]

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
