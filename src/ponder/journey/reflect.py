"""Reflections written by the policy itself, the o1 replication's other choice (templates are the default).

For each wrong turn of a journey, the policy reads the question and the walk so far (down to the end of the wrong
branch) and is told that the answer it reached is wrong, never what the right one is. Its answer, begun for it
with "The mistake is" (asked openly, the 0.5B repeats the request back), greedy, first sentence only, becomes the
reflection, opened with "Wait." and closed with the way back to the branching point. One sentence because the
0.5B mostly finds where the mistake is ("in the calculation of the cost of the sneakers") and then states a wrong
fix; the right path that follows shows the fix. A critique with no whole first sentence keeps its template
reflection and is counted. Read them with `ponder journey show`.
"""

from __future__ import annotations

import re
from typing import Any

from ponder.engine.protocol import Generator
from ponder.engine.sampling import SamplingParams
from ponder.journey.build import STEP_BREAK

CRITIQUE = "Your answer {answer} is wrong. Which step above has the mistake, and what is it? Answer in one sentence."
CRITIQUE_UNANSWERED = ("These steps do not lead to the answer. Which step above has the mistake, and what is it? "
                       "Answer in one sentence.")
OPENING = "The mistake is"
RETURN = " Let me go back to where it went wrong."
FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")  # "3.5" is not a sentence's end


def critique_messages(journey: dict[str, Any], reflection: int) -> list[dict[str, str]]:
    """The question, the walk before the `reflection`-th segment as the policy's own answer, and the request."""
    segments = journey["segments"]
    walked = "".join(s["text"] for s in segments[:reflection]).rstrip()
    answer = segments[reflection].get("answer")
    ask = CRITIQUE.format(answer=answer) if answer else CRITIQUE_UNANSWERED
    return list(journey["messages"][:-1]) + [{"role": "assistant", "content": walked}, {"role": "user", "content": ask}]


def policy_reflections(journeys: list[dict[str, Any]], generator: Generator, max_tokens: int = 64) -> int:
    """Replace the reflections of `journeys` (in place) by the policy's critiques, all in one batch; returns how
    many kept their template reflection (no whole first sentence)."""
    places = [(j, i) for j, journey in enumerate(journeys)
              for i, segment in enumerate(journey["segments"]) if segment["kind"] == "reflection"]
    if not places:
        return 0
    prompts = [generator.encode_chat(critique_messages(journeys[j], i)) + generator.encode(OPENING)
               for j, i in places]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=("\n",))
    kept = 0
    for (j, i), [critique] in zip(places, generator.sample(prompts, 1, params)):
        sentence = FIRST_SENTENCE.match(" ".join((OPENING + critique.text).split()))
        segment = journeys[j]["segments"][i]
        if sentence is None:
            kept += 1
            continue
        segment["text"] = f"Wait. {sentence.group(1)}{RETURN}{STEP_BREAK}"
        segment["by"] = "policy"
    for journey in journeys:
        journey["messages"][-1]["content"] = "".join(s["text"] for s in journey["segments"])
    return kept
