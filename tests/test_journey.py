"""Journey learning: shortcuts and journeys built from stored search trees of real model output."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from cli import error_line, ponder
from reference import ponder_model

from ponder.jobs import RunStore
from ponder.journey.build import BRANCHES, build
from ponder.journey.revisions import revision
from ponder.journey.trees import path, path_text, training_tasks

# Beam search (8 beams, width 4) of Qwen2.5-Coder-0.5B scored by its shipped PRM, on 4 training questions:
# `ponder journey trees --task gsm_symbolic --size 4 --seed 7 --n 8 --out trees.db`, exported as JSON lines.
TREES = Path(__file__).parent / "data" / "journey-trees.jsonl"


def stored() -> tuple[dict, list[dict]]:
    head, *records = [json.loads(line) for line in TREES.read_text().splitlines()]
    return head["settings"], records


def tasks() -> dict:
    settings = stored()[0]
    return {t.id: t for t in training_tasks(settings["tasks"], settings["size"], settings["seed"])}


@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("wrong", [1, 3])
def test_every_journey_ends_in_the_verified_answer_through_wrong_branches_the_tree_explored(branch: str,
                                                                                          wrong: int) -> None:
    settings, records = stored()
    by_question = {r["question"]: r for r in records}
    built = build(records, tasks(), branch, wrong)
    assert built.journeys and [s["question"] for s in built.shortcuts] == [j["question"] for j in built.journeys]
    assert built.skipped["no verified right path"] == ["gsm_symbolic/0", "gsm_symbolic/2"]
    for journey in built.journeys:
        record, task = by_question[journey["question"]], tasks()[journey["question"]]
        text = journey["messages"][-1]["content"]
        answer = task.extract(text)
        assert task.check(answer)  # the journey ends in the verified answer
        right = [k for k, leaf in record["leaves"].items() if leaf["correct"]]
        assert answer in {record["leaves"][k]["answer"] for k in right}
        nodes = {n["id"]: n for n in record["nodes"]}
        wrongs = [s for s in journey["segments"] if s["kind"] == "wrong"]
        assert 1 <= len(wrongs) <= wrong
        for segment in wrongs:
            line = [nodes[i] for i in segment["nodes"]]  # nodes of the tree, a connected line of it
            assert all(b["parent"] == a["id"] for a, b in zip(line, line[1:]))
            assert segment["text"].rstrip("\n") == "".join(n["text"] for n in line).rstrip("\n")
            leaves_below = [k for k, leaf in record["leaves"].items()
                            if line[0]["id"] in [n["id"] for n in path(record["nodes"], int(k))]]
            assert leaves_below and not any(record["leaves"][k]["correct"] for k in leaves_below)
        assert [s["kind"] for s in journey["segments"]][-1] == "right"
        assert "".join(s["text"] for s in journey["segments"]) == text
    for shortcut in built.shortcuts:
        record = by_question[shortcut["question"]]
        best = max((k for k, leaf in record["leaves"].items() if leaf["correct"]),
                   key=lambda k: (next(n for n in record["nodes"] if n["id"] == int(k)).get("score") or 0, -int(k)))
        assert shortcut["messages"][-1]["content"] == path_text(record["nodes"], int(best))


def test_build_says_what_it_skipped_per_question_and_writes_whole_files(tmp_path: Path) -> None:
    settings, records = stored()
    with RunStore(tmp_path / "trees.db", settings) as store:
        for record in records:  # the last question's tree left out: a store with no tree for it
            store.put(record["question"], record if record["question"] != "gsm_symbolic/3" else
                      {"question": "gsm_symbolic/3", "nodes": [], "leaves": {}})
    done = ponder("journey", "build", str(tmp_path / "trees.db"), "--shortcut", str(tmp_path / "s.jsonl"),
                  "--journey", str(tmp_path / "j.jsonl"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 questions with no verified right path: gsm_symbolic/0, gsm_symbolic/2" in done.stdout
    assert "1 questions with no tree stored: gsm_symbolic/3" in done.stdout
    assert "1 shortcuts in" in done.stdout and "1 journeys in" in done.stdout
    assert not list(tmp_path.glob("*.partial"))
    shown = ponder("journey", "show", str(tmp_path / "j.jsonl"), home=tmp_path)
    assert shown.returncode == 0 and "[wrong turn]" in shown.stdout and "[reflection]" in shown.stdout
    assert "no segments" in error_line(ponder("journey", "show", str(tmp_path / "s.jsonl"), home=tmp_path))
    with RunStore(tmp_path / "grid.db", {"tasks": "gsm_symbolic"}) as store:
        store.put("x", {"question": "x"})
    assert "holds no search trees" in error_line(ponder("journey", "build", str(tmp_path / "grid.db"), "--shortcut",
                                                        "a", "--journey", "b", home=tmp_path))


def test_journey_trees_runs_a_tree_strategy_and_checks_its_leaves(tmp_path: Path) -> None:
    ponder_model("smollm2-135m-instruct")  # skips when not pulled
    out = tmp_path / "trees.db"
    args = ["journey", "trees", "--model", "smollm2-135m-instruct", "--task", "chain_sum:terms=2,digits=1",
            "--size", "1", "--n", "4", "--verifier", "arithmetic", "--max-tokens", "48", "--out", str(out)]
    from ponder.models.registry import model_dir

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "smollm2-135m-instruct").symlink_to(model_dir("smollm2-135m-instruct"))
    done = ponder(*args, home=home)
    assert done.returncode == 0, done.stderr
    [(key, record)] = RunStore.existing(out).items()
    finished = [n for n in record["nodes"] if n["state"] == "finished"]
    assert record["nodes"] and all(str(n["id"]) in record["leaves"] for n in finished)
    args[args.index("--size") + 1] = "2"  # two questions at once: the same trees as one by one
    for concurrent, store in (("1", tmp_path / "one.db"), ("2", tmp_path / "two.db")):
        # a generous timeout: CI shares its two cores with whatever else runs (a failure in CI was this timeout)
        done = ponder(*args[:-1], str(store), "--concurrent", concurrent, home=home, timeout=1200)
        assert done.returncode == 0, done.stderr
    one, two = (dict(RunStore.existing(tmp_path / name).items()) for name in ("one.db", "two.db"))
    assert len(one) == 2 and one == two
    assert "grows no tree" in error_line(ponder(*args[:-2], "--strategy", "majority", "--out", str(out), home=home))


def test_revisions_reads_each_journey_as_a_wrong_answer_turned_right_and_no_shortcut_as_revising(
        tmp_path: Path) -> None:
    settings, records = stored()
    built = build(records, tasks(), "deepest", 1)
    by_id = tasks()
    for journey in built.journeys:  # real model text, the wrong branch's answer before the reflection
        assert revision(by_id[journey["question"]], journey["messages"][-1]["content"], True) == "wrong -> right"
    for shortcut in built.shortcuts:
        assert revision(by_id[shortcut["question"]], shortcut["messages"][-1]["content"], True) is None
    for name, rows in (("journey", built.journeys), ("shortcut", built.shortcuts)):
        with RunStore(tmp_path / f"{name}.db", {"tasks": settings["tasks"], "size": settings["size"],
                                                "task_seed": settings["seed"]}) as store:
            for row in rows:  # as `ponder eval` stores a greedy answer
                text = row["messages"][-1]["content"]
                store.put(f"{row['question']}#0", {"question": row["question"], "seed": 0, "pool": [], "results": {
                    "greedy@1": {"text": text, "correct": by_id[row["question"]].is_correct(text),
                                 "tokens": len(text) // 4}}})
    done = ponder("journey", "revisions", str(tmp_path / "journey.db"), str(tmp_path / "shortcut.db"), "--out",
                  str(tmp_path / "table.md"), "--figure", str(tmp_path / "figure.png"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" | ")[0]: line.split(" | ") for line in (tmp_path / "table.md").read_text().splitlines()}
    journeys = len(built.journeys)
    assert lines["| journey"][1:5] == [str(journeys), "1.00 [1.00, 1.00]", lines["| journey"][3],
                                       f"{journeys} (100%)"]
    assert lines["| journey"][5] == str(journeys) and lines["| shortcut"][4] == "0 (0%)"
    assert (tmp_path / "figure.png").read_bytes()[:4] == b"\x89PNG"
    # words before the first reflection: the walk's segments before it (the right steps and the wrong branch)
    walked = [len("".join(s["text"] for s in j["segments"][:[x["kind"] for x in j["segments"]].index("reflection")])
                  .split()) for j in built.journeys]
    assert lines["| journey"][-1] == f"{statistics.median(walked):.0f} |" and lines["| shortcut"][-1] == "|"
    assert "no greedy@2 answers" in error_line(ponder("journey", "revisions", str(tmp_path / "journey.db"),
                                                      "--cell", "greedy@2", home=tmp_path))


def test_the_reflection_pattern_takes_reflections_not_words_that_look_like_them() -> None:
    task = tasks()["gsm_symbolic/1"]
    assert revision(task, "So 3 + 4 = 8.\n\nWait, 8 does not look right. 3 + 4 = 7.", False) == "wrong -> wrong"
    assert revision(task, "The wait time is 5 minutes, so the answer is 5.", False) is None
    assert revision(task, "Hmm, let me think.\n\nThe answer is 5.", False) == "no answer before"


def test_policy_reflections_are_the_policys_critique_of_the_wrong_turn_it_was_shown(tmp_path: Path) -> None:
    ponder_model("smollm2-135m-instruct")  # skips when not pulled
    from ponder.journey.reflect import OPENING, RETURN, critique_messages
    from ponder.models.registry import model_dir

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "smollm2-135m-instruct").symlink_to(model_dir("smollm2-135m-instruct"))
    settings, records = stored()
    with RunStore(tmp_path / "trees.db", settings) as store:
        for record in records:
            store.put(record["question"], record)
    done = ponder("journey", "build", str(tmp_path / "trees.db"), "--shortcut", str(tmp_path / "s.jsonl"),
                  "--journey", str(tmp_path / "j.jsonl"), "--wrong", "3", "--reflections", "policy", "--model",
                  "smollm2-135m-instruct", home=home)
    assert done.returncode == 0, done.stderr
    journeys = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    templated = build(records, tasks(), "deepest", 3).journeys  # the same walks with template reflections
    assert [j["question"] for j in journeys] == [j["question"] for j in templated]
    by_policy = 0
    for journey, template in zip(journeys, templated):
        task = tasks()[journey["question"]]
        text = journey["messages"][-1]["content"]
        assert text == "".join(s["text"] for s in journey["segments"]) and task.check(task.extract(text))
        assert revision(task, text, True) == "wrong -> right"
        for i, (segment, before) in enumerate(zip(journey["segments"], template["segments"])):
            if segment["kind"] != "reflection" or segment["by"] != "policy":
                assert segment == before  # right and wrong steps untouched; a kept template as it was
                continue
            by_policy += 1
            assert segment["text"] != before["text"]
            shown = critique_messages(journey, i)  # what the policy read: the walk down to this wrong turn's end
            assert shown[-2]["content"] == "".join(s["text"] for s in journey["segments"][:i]).rstrip()
            assert journey["segments"][i - 1]["kind"] == "wrong"
            told = shown[-1]["content"]  # the wrong answer named, never the right one
            assert (str(segment["answer"]) in told) if segment["answer"] else ("do not lead" in told)
            assert segment["text"].startswith(f"Wait. {OPENING}") and segment["text"].rstrip("\n").endswith(RETURN)
    assert by_policy
    assert "templates or policy" in error_line(ponder("journey", "build", str(tmp_path / "trees.db"), "--shortcut",
                                                      "a", "--journey", "b", "--reflections", "mine", home=home))
