"""Long jobs (PRM labelling, the evaluation grid) that survive being killed.

A job is a list of item keys and a function from a key to a JSON result. Each result goes into the run's SQLite
store in its own transaction as soon as it exists, so a run that is killed and restarted continues where it
stopped, losing at most the items in progress. The same mechanism runs in this process or fanned out on Ray;
either way only this process writes the store, so there is one writer and never a duplicate or half-written row.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ponder.errors import BadParameter

_SCHEMA = ("CREATE TABLE settings(json TEXT)",
           "CREATE TABLE results(seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, json TEXT NOT NULL)")
_UNSET = "<unset>"


class RunStore:
    """One SQLite database per run: the run's settings, and one JSON result per item key."""

    def __init__(self, path: Path | str, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))  # what will be read back (tuples become lists, ...)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)  # autocommit; explicit BEGINs
        stored = self._open()
        if stored is None:
            self._db.close()
            raise BadParameter(f"{self.path} exists and is not a ponder run store; use another output path")
        if stored != self.settings:
            name = next(k for k in sorted(stored.keys() | self.settings.keys()) if stored.get(k, _UNSET)
                        != self.settings.get(k, _UNSET))
            self._db.close()
            raise BadParameter(f"{self.path} holds a run with {name}={stored.get(name, _UNSET)!r}, not "
                               f"{self.settings.get(name, _UNSET)!r}; use another output path or the same settings")

    @classmethod
    def existing(cls, path: Path | str) -> RunStore:
        """An existing run's store, with the settings it was made with."""
        path = Path(path)
        if not path.is_file():
            raise BadParameter(f"no run at {path}: give the path of a finished or interrupted run")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                settings = json.loads(db.execute("SELECT json FROM settings").fetchone()[0])
        except (sqlite3.DatabaseError, TypeError):
            raise BadParameter(f"{path} is not a ponder run store; give the path of a run") from None
        return cls(path, settings)

    def _open(self) -> dict[str, Any] | None:
        """The stored settings, after creating the store if the file is new (or empty); None if not a run store."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:  # schema and settings in one transaction: a kill leaves either nothing or all of it
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute("INSERT INTO settings VALUES (?)", (json.dumps(self.settings, sort_keys=True),))
                tables = {"settings", "results"}
            self._db.execute("COMMIT")
            if not {"settings", "results"} <= tables:
                return None
            self._db.execute("PRAGMA journal_mode=WAL")  # readers (a progress monitor) never block the writer
            self._db.execute("PRAGMA synchronous=NORMAL")  # a killed process loses nothing committed
            row = self._db.execute("SELECT json FROM settings").fetchone()
            return None if row is None else json.loads(row[0])
        except sqlite3.OperationalError:  # locked, unreadable, ...: not the file's fault
            raise
        except sqlite3.DatabaseError:  # "file is not a database", corrupt
            return None

    def done(self) -> set[str]:
        return {key for (key,) in self._db.execute("SELECT key FROM results")}

    def put(self, key: str, result: dict[str, Any]) -> None:
        """Store one result, atomically; a key already stored raises ValueError and changes nothing."""
        text = json.dumps(result)
        try:
            self._db.execute("INSERT INTO results(key, json) VALUES (?, ?)", (key, text))
        except sqlite3.IntegrityError:
            raise ValueError(f"{key!r} is already stored in {self.path}") from None

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT json FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return [(key, json.loads(text)) for key, text in self._db.execute("SELECT key, json FROM results ORDER BY seq")]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _call(work: Callable[[str], dict[str, Any]], key: str) -> dict[str, Any]:
    return work(key)


@contextlib.contextmanager
def _progress(label: str | None, total: int, completed: int) -> Iterator[Callable[[], None]]:
    """Yields a function to call once per finished item; shows progress when `label` is given (a bar in a
    terminal, a line every half minute in a log file)."""
    if label is None:
        yield lambda: None
        return
    from ponder.progress import Progress

    with Progress(total, label, done=completed) as shown:
        yield shown.advance


def run_all(keys: Sequence[str], work: Callable[[str], dict[str, Any]], store: RunStore, *,
            ray_address: str | None = None, progress: str | None = None, max_in_flight: int | None = None,
            threads: int = 1) -> int:
    """Run `work(key)` for every key not yet in `store`, storing each result as soon as it exists; returns how many
    ran. Locally (ray_address None): in order, in this process, or `threads` keys at once in threads of it (for
    work that shares one batching engine). On Ray ("local" starts a local Ray, else an address for ray.init):
    `work` is pickled to Ray tasks, at most `max_in_flight` at once (default: the cluster's CPUs)."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise BadParameter(f"item key {key!r} appears more than once; each item needs its own key")
        seen.add(key)
    if max_in_flight is not None and max_in_flight < 1:
        raise BadParameter(f"max_in_flight must be at least 1, not {max_in_flight}")
    if threads < 1:
        raise BadParameter(f"items at once must be at least 1, not {threads}")
    if ray_address is not None:
        try:
            import ray
        except ImportError:
            raise BadParameter("running on Ray needs Ray installed: pip install 'ponder[ray]'") from None
    done = store.done()
    todo = deque(key for key in keys if key not in done)
    ran = len(todo)
    with _progress(progress, len(keys), len(keys) - ran) as advance:
        if ray_address is None and threads == 1:
            for key in todo:
                store.put(key, work(key))
                advance()
            return ran
        if ray_address is None:
            pool, running = ThreadPoolExecutor(threads), {}
            try:
                while todo or running:
                    while todo and len(running) < threads:
                        key = todo.popleft()
                        running[pool.submit(work, key)] = key
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:  # this thread is the store's one writer
                        store.put(running.pop(future), future.result())
                        advance()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            return ran
        started = not ray.is_initialized()  # a caller's own Ray is left running
        if started:
            where = {"num_cpus": os.cpu_count()} if ray_address == "local" else {"address": ray_address}
            ray.init(**where, include_dashboard=False, ignore_reinit_error=True)
        pending: dict[Any, str] = {}  # task -> key
        try:
            limit = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote, work_ref = ray.remote(num_cpus=1)(_call), ray.put(work)
            while todo or pending:
                while todo and len(pending) < limit:
                    key = todo.popleft()
                    pending[remote.remote(work_ref, key)] = key
                [ready], _ = ray.wait(list(pending), num_returns=1)
                store.put(pending.pop(ready), ray.get(ready))  # the driver is the store's one writer
                advance()
        finally:
            if started:
                ray.shutdown()
            else:
                for task in pending:
                    ray.cancel(task)
    return ran


def write_whole(path: Path, content: str | bytes) -> None:
    """All of it or nothing: written beside the target, then renamed into place (a killed write leaves no half
    file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.replace(partial, path)


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """All rows or none (see `write_whole`)."""
    write_whole(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object is one error naming it."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadParameter(f"cannot read training data from {path} ({e})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise BadParameter(f"{path}, line {number}: not JSON ({e}): write one JSON object per line") from None
        if not isinstance(row, dict):
            raise BadParameter(f"{path}, line {number}: a {type(row).__name__}, not a JSON object")
        rows.append((number, row))
    if not rows:
        raise BadParameter(f"{path} holds no rows: write one JSON object per line")
    return rows
