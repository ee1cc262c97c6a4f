"""Program-aided answers: programs run in the sandbox, their printed results are the answers voted on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.errors import BadParameter
from ponder.eval.grid import GridSettings, run_item
from ponder.search import make_strategy
from ponder.search.base import Search
from ponder.tasks import load_tasks, question_task
from ponder.tasks.program import ProgramTask, run_program, with_format
from cli import error_line, ponder
from scripted import Writes

QUESTION = "A baker made 48 cookies. She sold 17 in the morning and 12 in the afternoon, then baked 9 more. " \
           "How many cookies does she have now?"


LOOP = "while True:\n    pass\n"  # as a block's program reads, so that its one slow run is cached for every test


def block(code: str) -> str:
    return f"Here is the program:\n```python\n{code.rstrip()}\n```\n"


@pytest.mark.parametrize("code, reason", [
    (LOOP, "timeout"),
    ("x = bytearray(10**10)", "memory limit"),
    ("import socket\nsocket.socket()", "sandbox violation"),
    ("x = 48 - 17", "printed nothing"),
    ("print(48 -", "SyntaxError"),
    ("print('  ')", "printed nothing"),
])
def test_a_failing_program_is_an_answer_with_none_and_a_reason(code: str, reason: str) -> None:
    answer, why = run_program(code)
    assert answer is None and reason in why


def test_the_last_printed_line_is_the_answer_normalised() -> None:
    assert run_program("print('working...')\nprint(f'{48 - 17 - 12 + 9:,} cookies')") == ("28", None)


def test_float_noise_is_rounded_away_so_that_agreeing_programs_vote_together() -> None:
    assert run_program("print(0.1 * 3)") == ("0.3", None)  # not 0.30000000000000004
    assert run_program("print(0.4 * 27.5)")[0] == run_program("print(11.000000000000002)")[0] == "11"
    assert run_program("print(-2.125)") == ("-2.125", None) and run_program("print(1/4)") == ("0.25", None)


def test_the_program_format_asks_for_a_program_and_checks_with_the_question() -> None:
    task = with_format(question_task(QUESTION, "math", "28"), "program")
    assert isinstance(task, ProgramTask) and "Python program" in task.messages[0]["content"]
    assert task.messages[-1] == {"role": "user", "content": QUESTION}
    assert task.extract(block("print(48 - 17 - 12 + 9)")) == "28" and task.check("28")
    assert task.extract("The answer is 28.") is None  # no program, no answer
    assert with_format(task.question, "cot") is task.question
    with pytest.raises(BadParameter, match="use one of cot, program, mixed"):
        with_format(task, "poem")
    with pytest.raises(BadParameter, match="a code task"):
        with_format(load_tasks("humaneval", 1, 0)[0], "program")


PROGRAMS = [block("print(48 - 17 - 12 + 9)"), block("print(48 + 17 + 12 + 9)"), block(LOOP),
            block("total = 48 - (17 + 12) + 9\nprint(total)"), "I cannot write that."]


def test_majority_votes_on_what_the_programs_print() -> None:
    task = with_format(question_task(QUESTION, "math", "28"), "program")
    result = make_strategy("majority", 5).run(Search(Writes(PROGRAMS), task))
    assert result.answer == "28" and task.check(result.answer)
    assert [c.answer for c in result.candidates].count(None) == 2  # the loop and the prose: no vote, no crash
    reasons = {c.text: c.reason for c in result.candidates}
    assert "timeout" in reasons[PROGRAMS[2]] and reasons[PROGRAMS[4]] == "no python code block"
    assert all(c.reason is None for c in result.candidates if c.answer is not None)


def test_solve_in_the_program_format_answers_with_what_the_programs_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ponder.engine.backends.open_generator", lambda model, backend: Writes(PROGRAMS))
    args = ["solve", QUESTION, "--format", "program", "--strategy", "majority", "--n", "5", "--answer", "28"]
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["answer"] == "28"
    reasons = sorted(c["reason"] for c in result["candidates"] if c["answer"] is None)
    assert reasons[0] == "no python code block" and reasons[1].startswith("timeout") and len(reasons) == 2
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "answer: 28  (right)" in table.stdout and "no answer:" in table.stdout


@pytest.mark.parametrize("args, says", [
    (["solve", QUESTION, "--format", "poem"], "unknown format 'poem': use one of cot, program, mixed"),
    (["eval", "--task", "humaneval", "--size", "2", "--format", "program", "--out", "OUT"], "is a code task"),
])
def test_a_format_that_cannot_be_is_one_error_line_before_any_model_loads(tmp_path: Path, args: list[str],
                                                                           says: str) -> None:
    done = ponder(*(str(tmp_path / "run.db") if a == "OUT" else a for a in args), home=tmp_path)
    assert says in error_line(done) and not (tmp_path / "run.db").exists()


def test_an_eval_grid_in_the_program_format() -> None:
    grid = GridSettings(("greedy", "majority"), (1, 5), answer_format="program")
    assert grid.to_dict()["answer_format"] == "program"
    assert "answer_format" not in GridSettings(("majority",), (4,)).to_dict()  # old stores still resume
    with pytest.raises(BadParameter, match="unknown format"):
        GridSettings(("majority",), (4,), answer_format="poem")
    task = with_format(question_task(QUESTION, "math", "28"), "program")
    item = run_item(Writes(PROGRAMS), task, 0, grid)
    assert item["results"]["majority@5"]["correct"] and item["results"]["greedy@1"]["correct"]
    assert item["results"]["majority@1"]["correct"] and not any(s["correct"] for s in item["pool"][1:3])


def test_mixed_asks_for_chains_of_thought_and_programs_in_turn_and_votes_across_them() -> None:
    task = with_format(question_task(QUESTION, "math", "28"), "mixed")
    generator = Writes(["48 - 17 - 12 + 9 = 38. The answer is 38.", block("print(48 - 17 - 12 + 9)"),
                        "So she has 28 left. The answer is 28.", block("print(48 + 9)")])
    search = Search(generator, task)
    samples = search.sample(4, make_strategy("majority", 4).sampling.whole())
    asked = ["".join(map(chr, s.prompt)) for s in samples]
    assert ["Python program" in a for a in asked] == [False, True, False, True]  # by fork index: pools stay balanced
    assert [task.extract(s.text) for s in samples] == ["38", "28", "28", "57"]
    result = make_strategy("majority", 4).run(Search(generator, task))
    assert result.answer == "28"  # a chain of thought and a program agree
    assert make_strategy("greedy").run(Search(generator, task)).answer == "38"  # greedy: a chain of thought


class AsksTwoWays(Writes):
    """Chains of thought where a chain of thought is asked for, programs where a program is (by fork index)."""

    def __init__(self, prose: list[str], programs: list[str]):
        super().__init__(prose)
        self.prose, self.programs = prose, programs

    def extend(self, sequences: list, params: object) -> list:
        out = []
        for seq in sequences:
            self.completions = self.programs if "Python program" in "".join(map(chr, seq.prompt)) else self.prose
            out += super().extend([seq], params)
        return out


def format_rows(answer_format: str, right: bool) -> tuple[dict, list[dict]]:
    """A store of 20 questions in one format: the first half's probes agree (and are right), the second
    half's disagree; majority@4 is right on the hard half only where `right`. A program is a quarter of a chain of
    thought, but asked in another format than the probes', it pays for them on top: a budget of 8 fits it."""
    settings = {"model": "scripted", "tasks": "t", "task_seed": 1, "verifier": None, "budgets": [4, 8],
                "answer_format": answer_format}
    rows = []
    for i in range(20):
        easy = i < 10
        pool = [{"answer": "28" if easy else str(k), "correct": easy} for k in range(4)]
        cost = 1 if answer_format == "program" else 4
        cell = {"correct": easy or right, "flops": cost * 1e9, "tokens": cost * 100, "seconds": cost}
        rows.append({"question": f"q{i}", "seed": 0, "pool": pool,
                     "results": {"majority@4": cell, "pass@4": cell | {"correct": True}}})
    return settings, rows


def test_auto_chooses_the_answer_format_per_difficulty_and_asks_the_question_that_way() -> None:
    from ponder.eval.allocate import build_policy, with_formats
    from ponder.search.auto import AutoStrategy

    cot_settings, cot_rows = format_rows("cot", right=False)
    rows = with_formats(cot_rows, cot_settings, [format_rows("program", right=True)])
    assert set(rows[0]["results"]) == {"majority@4", "pass@4", "majority:format=program@4"}  # no oracle
    policy = build_policy(rows, cot_settings, probe=4, bins=2, prior=0, predictor="agreement")
    assert policy.verifier is None and policy.table[1][4].strategy == "majority"
    assert policy.table[2][4].strategy == "majority" and policy.table[2][8].strategy == "majority:format=program"
    prose = ["So 48 - 17 = 31. The answer is 31.", "The answer is 57.", "The answer is 12.", "The answer is 38."]
    generator = AsksTwoWays(prose, PROGRAMS)
    hard = AutoStrategy(policy, n=8).run(Search(generator, question_task(QUESTION, "math", "28")))
    assert hard.settings["bin"] == 2 and hard.answer == "28"  # the chains of thought disagreed: programs asked
    assert all("```python" in c.text or c.text == PROGRAMS[4] for c in hard.candidates)
    easy = AutoStrategy(policy, n=8).run(Search(AsksTwoWays(["The answer is 28."], PROGRAMS),
                                                with_format(question_task(QUESTION, "math", "28"), "program")))
    assert easy.settings["bin"] == 1 and all(c.text == "The answer is 28." for c in easy.candidates)  # as calibrated
    for other, says in [({"tasks": "u"}, "different questions"), ({"model": "other"}, "different models"),
                        ({"answer_format": "cot"}, "two runs of format cot")]:
        program_settings, program_rows = format_rows("program", right=True)
        with pytest.raises(BadParameter, match=says):
            with_formats(cot_rows, cot_settings, [(program_settings | other, program_rows)])


def test_allocate_and_report_join_runs_in_other_formats(tmp_path: Path) -> None:
    from ponder.jobs import RunStore

    for answer_format, right in [("cot", False), ("program", True)]:
        settings, rows = format_rows(answer_format, right)
        with RunStore(tmp_path / f"{answer_format}.db", settings) as store:
            for row in rows:
                store.put(f"{row['question']}#0", row)
    run, joined = str(tmp_path / "cot.db"), str(tmp_path / "program.db")
    for fold in (0, 1):
        done = ponder("allocate", run, "--formats", joined, "--predictor", "agreement", "--prior", "0", "--bins", "2",
                      "--folds", "2", "--hold-out", str(fold), "--out", str(tmp_path / f"p{fold}.json"), home=tmp_path)
        assert done.returncode == 0, done.stderr
    assert "majority:format=program@4" in done.stdout
    done = ponder("report", run, "--formats", joined, "--policy", str(tmp_path / "p0.json"), "--policy",
                  str(tmp_path / "p1.json"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| auto | 8 | 1.00" in done.stdout  # each half judged by the other's policy: programs where prose fails
