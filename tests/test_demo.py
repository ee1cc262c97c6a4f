"""`ponder demo`: each way of answering is timed and charged, and the measured lines name their commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder import demo
from scripted import Writes
from test_program import PROGRAMS


def test_each_way_is_answered_checked_and_charged() -> None:
    generator = Writes(PROGRAMS)
    harder = demo.attempt(generator, demo.QUESTION, demo.ANSWER, "harder", {**demo.DEFAULT_THINKING, "n": 5}, 0)
    assert harder.answer == "28" and harder.right and harder.tflops > 0 and harder.tokens > 0
    one = demo.attempt(Writes(["48 - 17 = 31, 31 - 12 = 19, 19 + 9 = 28. The answer is 28."]), demo.QUESTION,
                       None, "one", demo.ONE_SAMPLE, 0)
    assert one.answer == "28" and one.right is None  # no right answer given: not judged


def test_measured_lines_name_the_command_and_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "MEASURED", tmp_path / "measured.json")
    assert demo.measured_lines("m") == []  # nothing measured: the demo says so
    line = {"label": "majority of 8 programs", "accuracy": 0.5, "low": 0.4, "high": 0.6, "questions": 100,
            "task": "gsm_symbolic", "tflops": 1.25, "cell": "majority@8", "command": "ponder eval --format program"}
    demo.MEASURED.write_text(json.dumps({"m": [line]}))
    (text,) = demo.measured_lines("m")
    assert "0.50 (95% CI 0.40-0.60) on 100 held-out gsm_symbolic" in text and "[ponder eval --format program]" in text
