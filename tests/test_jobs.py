"""Resumable jobs: the run store keeps every result once, a killed run continues, Ray stores what local stores."""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ponder.errors import BadParameter
from ponder.jobs import RunStore, run_all

KEYS = [f"item-{i:02d}" for i in range(30)]

# Run in a fresh interpreter by the kill/resume test: stores the results of KEYS in argv[1], prints how many ran.
SCRIPT = """
import sys, time
from ponder.jobs import RunStore, run_all

def work(key):
    time.sleep(0.05)
    n = int(key.split("-")[1])
    return {"key": key, "square": n * n, "tags": [key[::-1], n % 3]}

with RunStore(sys.argv[1], {"task": "squares", "n": 30}) as store:
    print(run_all([f"item-{i:02d}" for i in range(30)], work, store))
"""


class Square:
    """Picklable work: what the Ray workers run."""

    def __call__(self, key: str) -> dict[str, Any]:
        n = int(key.split("-")[1])
        return {"key": key, "square": n * n, "tags": [key[::-1], n % 3]}


def test_round_trip_and_no_duplicate(tmp_path: Path) -> None:
    with RunStore(tmp_path / "deep" / "run.db", {"model": "tiny"}) as store:
        assert len(store) == 0 and store.done() == set() and store.get("a") is None
        store.put("b", {"x": 1, "y": [1.5, "two"]})
        store.put("a", {"x": 2})
        assert store.get("b") == {"x": 1, "y": [1.5, "two"]}
        assert store.items() == [("b", {"x": 1, "y": [1.5, "two"]}), ("a", {"x": 2})]  # in the order stored
        assert store.done() == {"a", "b"} and len(store) == 2
        with pytest.raises(ValueError, match="already stored"):
            store.put("a", {"x": 3})
        assert len(store) == 2 and store.get("a") == {"x": 2}
    with sqlite3.connect(tmp_path / "deep" / "run.db") as db:
        assert db.execute("SELECT key, COUNT(*) FROM results GROUP BY key").fetchall() == [("a", 1), ("b", 1)]


def test_reopen_same_settings_continues_other_settings_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    settings = {"model": "tiny", "samples": 4, "temperature": 0.7}
    with RunStore(path, settings) as store:
        store.put("q1", {"ok": True})
    with RunStore(path, dict(settings)) as store:
        assert store.items() == [("q1", {"ok": True})] and store.settings == settings
        store.put("q2", {"ok": False})
        assert len(store) == 2
    with pytest.raises(BadParameter) as error:
        RunStore(path, {**settings, "samples": 8})
    message = str(error.value)
    assert "samples" in message and "4" in message and "8" in message and "same settings" in message
    assert "\n" not in message
    with pytest.raises(BadParameter, match="extra"):
        RunStore(path, {**settings, "extra": 1})
    with RunStore(path, settings) as store:  # a refused open changed nothing
        assert len(store) == 2

    junk = tmp_path / "notes.txt"
    junk.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(BadParameter, match="not a ponder run store") as error:
        RunStore(junk, settings)
    assert "\n" not in str(error.value)
    assert junk.read_text().startswith("these are my notes")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things(x)")
    with pytest.raises(BadParameter, match="not a ponder run store"):
        RunStore(other, settings)


def _stored(path: Path) -> int:
    """How many results a run in another process has stored so far (0 before it has created its store)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_resume_after_sigkill(tmp_path: Path) -> None:
    script = [sys.executable, "-c", SCRIPT]
    whole = subprocess.run([*script, str(tmp_path / "whole.db")], capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.split() == ["30"]

    path = tmp_path / "killed.db"
    run = subprocess.Popen([*script, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _stored(path) < 2:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the run stored nothing in 60 s"
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.6))
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    stored = _stored(path)
    assert 2 <= stored < 30, "the kill should interrupt the run"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    again = subprocess.run([*script, str(path)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert int(again.stdout) == 30 - stored  # only what was missing ran
    with RunStore(path, {"task": "squares", "n": 30}) as resumed, \
            RunStore(tmp_path / "whole.db", {"task": "squares", "n": 30}) as reference:
        assert resumed.items() == reference.items()
        assert [key for key, _ in resumed.items()] == KEYS  # every key once, none twice


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'ponder[ray]')")
def test_ray_stores_what_local_stores(tmp_path: Path) -> None:
    import ray.cloudpickle

    keys = KEYS[:12]
    with RunStore(tmp_path / "local.db", {"n": 12}) as local:
        assert run_all(keys, Square(), local) == 12
        expected = local.items()
    # Ray workers cannot import this test module, so ship Square by value (ponder's own work lives in ponder).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with RunStore(tmp_path / "ray.db", {"n": 12}) as store:
            store.put(keys[0], Square()(keys[0]))  # a resumed run: only the other 11 go to Ray
            assert run_all(keys, Square(), store, ray_address="local", max_in_flight=2, progress="ray") == 11
            got = store.items()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(got) == 12 and dict(got) == dict(expected)
    assert sorted(key for key, _ in got) == keys


def test_run_all_refuses_duplicates_and_missing_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunStore(tmp_path / "run.db", {}) as store:
        with pytest.raises(BadParameter, match="'b' appears more than once"):
            run_all(["a", "b", "c", "b"], Square(), store)
        assert len(store) == 0
        monkeypatch.setitem(sys.modules, "ray", None)
        with pytest.raises(BadParameter, match=r"pip install 'ponder\[ray\]'") as error:
            run_all(["item-01"], Square(), store, ray_address="local")
        assert "\n" not in str(error.value)
        assert run_all(["item-01", "item-02"], Square(), store, progress="local") == 2  # local needs no ray
        assert run_all(["item-01", "item-02"], Square(), store) == 0  # all done: nothing runs
        assert store.items() == [("item-01", Square()("item-01")), ("item-02", Square()("item-02"))]


def test_evidence_snapshot_round_trips_stores_and_benchmark_rows_without_states(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("snapshot", Path(__file__).parents[1] / "benchmarks" / "snapshot.py")
    snapshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot)
    runs, evidence, fresh = tmp_path / "runs", tmp_path / "evidence", tmp_path / "fresh"
    settings = {"task": "labels", "size": 3}

    def result(i: int) -> dict[str, Any]:
        return {"id": f"q{i}", "samples": [{"tokens": [i, 2], "labels": [0.5], "states": "AAAA"}]}

    with RunStore(runs / "labels.db", settings) as store:
        for i in range(3):
            store.put(f"q{i}", result(i))
    (runs / "search.jsonl").write_text("".join(json.dumps(result(i)) + "\n" for i in range(2)))
    snapshot.save(runs, evidence)
    assert "states" not in (evidence / "labels.store.jsonl").read_text() + (evidence / "search.jsonl").read_text()

    with RunStore(fresh / "labels.db", settings) as store:  # a machine that already has one of them
        store.put("q1", result(1))
    (fresh / "search.jsonl").write_text(json.dumps(result(0)) + "\n")
    for _ in range(2):  # restoring twice changes nothing the second time
        snapshot.restore(evidence, fresh)
    bare = [{"id": f"q{i}", "samples": [{"tokens": [i, 2], "labels": [0.5]}]} for i in range(3)]
    with RunStore.existing(fresh / "labels.db") as store:
        assert store.settings == settings
        assert sorted(store.items()) == [("q0", bare[0]), ("q1", result(1)), ("q2", bare[2])]
    rows = [json.loads(line) for line in (fresh / "search.jsonl").read_text().splitlines()]
    assert rows == [result(0), bare[1]]
    # A finished LoRA run: its adapters go packed (smaller, lossless) and come back byte for byte.
    from safetensors.torch import save

    import torch
    from ponder.train.lora import ADAPTER

    adapter = save({"a.lora_A.default.weight": torch.randn(16, 37), "a.lora_B.default.weight": torch.randn(5, 16)})
    for name, data in (("train.json", b'{"done": true}'), ("metrics.jsonl", b'{"step": 1}\n'), (ADAPTER, adapter)):
        (runs / "train" / "sft" / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / "train" / "sft" / name).write_bytes(data)
    snapshot.save(runs, evidence)
    assert not (evidence / "train" / "sft" / ADAPTER).exists()
    snapshot.restore(evidence, fresh)
    assert (fresh / "train" / "sft" / ADAPTER).read_bytes() == adapter
    assert snapshot.unpacked(snapshot.packed(adapter[:-3])) == adapter[:-3]  # any length


def test_threads_store_every_result_once_and_a_failure_stops_the_run(tmp_path: Path) -> None:
    def slow_square(key: str) -> dict[str, Any]:
        time.sleep(random.Random(key).random() / 50)  # finish out of order
        return Square()(key)

    with RunStore(tmp_path / "threads.db", {"n": 30}) as store:
        store.put(KEYS[0], Square()(KEYS[0]))
        assert run_all(KEYS, slow_square, store, threads=4) == 29
        assert dict(store.items()) == {k: Square()(k) for k in KEYS}

    def fails_on_7(key: str) -> dict[str, Any]:
        if key == "item-07":
            raise ValueError("item-07 failed")
        return Square()(key)

    with RunStore(tmp_path / "failing.db", {"n": 30}) as store:
        with pytest.raises(ValueError, match="item-07 failed"):
            run_all(KEYS, fails_on_7, store, threads=3)
        assert "item-07" not in dict(store.items()) and len(store) < 30
        with pytest.raises(BadParameter, match="at least 1"):
            run_all(KEYS, Square(), store, threads=0)
