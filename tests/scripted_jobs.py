"""Long jobs on the scripted generator (PRM labelling, an evaluation grid), for the resume and Ray tests:
importable by path from a subprocess, picklable by value for Ray workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ponder.eval.grid import GridSettings, run_item
from ponder.prm.label import LabelSettings, label_question
from scripted import GOOD_STEPS, SPLIT, ScriptedGenerator, ScriptedTask, ScriptedVerifier

# From the start, step "a" or "b"; after "a", two of three ways reach 7 (the answer); after "b", none.
TREE = {"": [("a\n\n", 0.5), ("b\n\n", 0.5)],
        "a\n\n": [("The answer is 7.", 0.4), ("The answer is 7.", 0.3), ("The answer is 9.", 0.3)],
        "b\n\n": [("The answer is 9.", 0.5), ("The answer is 8.", 0.5)]}


def task(i: int) -> ScriptedTask:
    return ScriptedTask(f"scripted/{i}", ({"role": "user", "content": f"Q{i}"},), "7")


@dataclass(frozen=True)
class ScriptedLabelJob:
    settings: LabelSettings
    pause: float = 0.0

    def __call__(self, key: str) -> dict[str, Any]:
        time.sleep(self.pause)
        result = label_question(ScriptedGenerator(TREE, round_robin=True), task(int(key)), self.settings)
        result["spend"].pop("seconds")  # the one thing a rerun may change
        return result


GRID = GridSettings(("greedy", "majority", "bon", "weighted_bon", "beam"), (1, 4, 8), verifier="scripted")


@dataclass(frozen=True)
class ScriptedEvalJob:
    grid: GridSettings = GRID
    pause: float = 0.0

    def __call__(self, key: str) -> dict[str, Any]:
        time.sleep(self.pause)
        question, _, seed = key.rpartition("#")
        item = run_item(ScriptedGenerator(SPLIT), task(int(question)), int(seed), self.grid,
                        ScriptedVerifier(GOOD_STEPS))
        for entry in item["results"].values():
            entry.pop("seconds", None)  # the one thing a rerun may change
        return item
