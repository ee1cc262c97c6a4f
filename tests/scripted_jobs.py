"""Long jobs on the scripted generator (PRM labelling, an evaluation grid), for the resume and Ray tests:
importable by path from a subprocess, picklable by value for Ray workers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ponder.eval.grid import GridSettings, run_item
from ponder.prm.label import LabelSettings, label_question
from scripted import ScriptedGenerator, ScriptedTask, ScriptedVerifier

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


# Greedy takes the likeliest first step, which leads to 6; most paths lead to 7 (as in test_search).
SPLIT = {"": [("Add 3 and 3 to get 6.\n\n", 0.4), ("Add 3 and 4 to get 7.\n\n", 0.3), ("So 3 + 4 = 7.\n\n", 0.3)],
         "Add 3 and 3 to get 6.\n\n": [("The answer is 6.", 1.0)],
         "Add 3 and 4 to get 7.\n\n": [("The answer is 7.", 1.0)],
         "So 3 + 4 = 7.\n\n": [("The answer is 7.", 1.0)]}
GOOD_STEPS = {"Add 3 and 3 to get 6.": 0.2, "Add 3 and 4 to get 7.": 0.9, "So 3 + 4 = 7.": 0.8,
              "The answer is 6.": 0.1, "The answer is 7.": 0.9}
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
