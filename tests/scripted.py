"""A scripted Generator and Verifier for strategy tests: a known tree of steps, known scores.

Tokens are characters. The "model" walks a tree: each step text leads to its children with given
probabilities. Temperature 0 takes the likeliest child; sampling draws from the sequence's own seed,
so forks differ and the same seed gives the same draw, as on a real backend.
"""

from __future__ import annotations

import random
from dataclasses import replace

from ponder.budget import Budget
from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.engine.sampling import SamplingParams
from ponder.tasks.answers import extract_answer, numbers_equal
from ponder.tasks.base import Task
from ponder.verify.base import STEP_DELIMITER, split_steps

Tree = dict[str, list[tuple[str, float]]]  # the text so far -> (next step, probability)

# Greedy decoding takes the likeliest first step, which leads to 6; most paths lead to 7.
SPLIT = {"": [("Add 3 and 3 to get 6.\n\n", 0.4), ("Add 3 and 4 to get 7.\n\n", 0.3), ("So 3 + 4 = 7.\n\n", 0.3)],
         "Add 3 and 3 to get 6.\n\n": [("The answer is 6.", 1.0)],
         "Add 3 and 4 to get 7.\n\n": [("The answer is 7.", 1.0)],
         "So 3 + 4 = 7.\n\n": [("The answer is 7.", 1.0)]}
GOOD_STEPS = {"Add 3 and 3 to get 6.": 0.2, "Add 3 and 4 to get 7.": 0.9, "So 3 + 4 = 7.": 0.8,
              "The answer is 6.": 0.1, "The answer is 7.": 0.9}


class ScriptedTask(Task):
    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def check(self, answer: str | None) -> bool:
        return answer is not None and numbers_equal(answer, self.reference)


def task(answer: str = "7") -> ScriptedTask:
    return ScriptedTask("scripted/0", ({"role": "user", "content": "Q"},), answer)


class ScriptedGenerator:
    def __init__(self, tree: Tree, revised: str | None = None, round_robin: bool = False):
        """revised: what the model writes when it is asked to revise an earlier attempt. round_robin: a
        sequence takes the option its last fork index points to (a known share of forks takes each)."""
        self.tree, self.revised, self.round_robin = tree, revised, round_robin
        self.info = ModelInfo("scripted", 1000, 1 << 20, frozenset())
        self.usage = Usage()

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, tokens: tuple[int, ...]) -> str:
        return "".join(map(chr, tokens))

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode("".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>")

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams) -> list[list[Sequence]]:
        return [self.extend(Sequence(tuple(p)).fork(n), params) for p in prompts]

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        return [s if s.done else self._grow(s, params) for s in sequences]

    def _grow(self, seq: Sequence, params: SamplingParams) -> Sequence:
        self.usage.prompt_tokens_computed += len(seq.all_tokens)
        text = seq.text
        revising = self.revised is not None and "<user>" in self.decode(seq.prompt).split("<assistant>", 1)[-1]
        while True:
            if revising:
                step = self.revised
            else:
                options = self.tree.get(text, [])
                if not options:
                    return replace(seq, done=True, finish_reason="stop")
                rng = random.Random(seq.seed_for(params.seed) if params.seed is not None else None)
                if self.round_robin:
                    step = options[(seq.branch or (0,))[-1] % len(options)][0]
                else:
                    step = (max(options, key=lambda o: o[1]) if params.temperature == 0 else
                            rng.choices(options, weights=[p for _, p in options])[0])[0]
            text += step
            done = revising or text not in self.tree
            tokens = seq.tokens + tuple(self.encode(text[len(seq.text):]))
            self.usage.generated_tokens += len(tokens) - len(seq.tokens)
            seq = replace(seq, tokens=tokens, logprobs=(0.0,) * len(tokens), text=text, done=done,
                          stop=STEP_DELIMITER if STEP_DELIMITER in params.stop and not done else None,
                          finish_reason="stop")
            if done or STEP_DELIMITER in params.stop:
                return seq


class ScriptedVerifier:
    """Scores each step by its text; unknown steps score `default`."""

    name = "scripted"

    def __init__(self, scores: dict[str, float], default: float = 0.5):
        self.scores, self.default, self.calls = scores, default, 0

    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        self.calls += 1
        budget.charge_verifier(10 * len(candidates), 100)
        return [[self.scores.get(step.strip(), self.default) for step in split_steps(c.text)] for c in candidates]


class Writes:
    """A generator whose i-th sample (by fork index) is the i-th completion, whole, in one call (tokens are
    characters): for strategies whose samples are whole answers (majority over programs, best-of-n)."""

    def __init__(self, completions: list[str]):
        self.completions, self.info, self.usage = completions, ModelInfo("scripted", 1000, 1 << 20), Usage()

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return [ord(c) for c in "".join(m["content"] for m in messages)]

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        out = []
        for seq in sequences:
            text = self.completions[(seq.branch or (0,))[-1] % len(self.completions)]
            self.usage.generated_tokens += len(text)
            out.append(replace(seq, tokens=tuple(map(ord, text)), text=text, finish_reason="stop", done=True))
        return out
