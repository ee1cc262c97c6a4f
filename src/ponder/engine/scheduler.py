"""One engine, many callers: a thread that steps a batched engine for every caller at once.

Each caller (a server request, a search strategy running in its own thread) calls `extend` as on
any Generator; its sequences join whatever the engine is already running, and the call returns
when they are done (continuous batching). One thread owns the engine and does all its work; the
callers only queue jobs and wait. `cancel` drops a caller's job at the next step (a client that
went away); `close` fails what is still queued or running. `usage` is the calling thread's own: what
its calls cost, not what the engine did for everyone meanwhile (a search's spend stays its own when
other requests share the batches); `engine_usage` is the total.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ponder.engine.batched import BatchedGenerator, Job
from ponder.engine.protocol import ModelInfo, SamplesByExtending, Sequence, Usage
from ponder.engine.sampling import SamplingParams
from ponder.errors import PonderError


class EngineClosed(PonderError):
    """The engine stopped (shut down, or failed) before the job was done."""


class _Closed:
    """Where a closed scheduler's engine was: its facts stay, any work is refused."""

    def __init__(self, info: ModelInfo):
        self.info = info

    def __getattr__(self, name: str) -> Any:
        raise EngineClosed("the engine is shutting down: try again later")


class Scheduler:
    def __init__(self, engine: BatchedGenerator):
        self.engine = engine
        self._lock = threading.Condition()
        self._jobs: list[Job] = []  # in the engine
        self._new: list[Job] = []  # submitted, not yet handed to the engine
        self._cancel: set[Job] = set()
        self._calls: list[tuple[Callable[[], Any], dict[str, Any]]] = []
        self._error: BaseException | None = None
        self._closed = False
        self._local = threading.local()  # each calling thread's usage
        self._thread = threading.Thread(target=self._loop, name="ponder-engine", daemon=True)
        self._thread.start()

    # --- the Generator protocol, for callers in any thread --------------------------------------------

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    @property
    def usage(self) -> Usage:
        """What this thread's calls have cost so far."""
        if not hasattr(self._local, "usage"):
            self._local.usage = Usage()
        return self._local.usage

    @property
    def engine_usage(self) -> Usage:
        return self.engine.usage

    def _credit(self, spent: Usage) -> None:
        mine = self.usage
        for name, value in vars(spent).items():  # in place: a caller may hold this thread's Usage
            setattr(mine, name, getattr(mine, name) + value)

    def encode(self, text: str) -> list[int]:
        return self.engine.encode(text)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.engine.encode_chat(messages)

    def decode(self, tokens: tuple[int, ...]) -> str:
        return self.engine.decode(tokens)

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams) -> list[list[Sequence]]:
        return SamplesByExtending.sample(self, prompts, n, params)  # type: ignore[arg-type]

    def extend(self, sequences: list[Sequence], params: SamplingParams,
               on_token: Callable[[int, Sequence], None] | None = None) -> list[Sequence]:
        return self.wait(self.submit(sequences, params, on_token))

    @property
    def value_head(self) -> Any:
        return self.engine.value_head

    @value_head.setter
    def value_head(self, head: Any) -> None:
        self.engine.value_head = head

    def states(self, contexts: list[tuple[int, ...]]) -> Any:
        return self.call(lambda: self.engine.states(contexts))

    def call(self, work: Callable[[], Any]) -> Any:
        """Run `work` in the engine's thread between two steps (anything that touches its cache); what
        it computes is charged to the calling thread."""
        box: dict[str, Any] = {}
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down: try again later")
            self._calls.append((work, box))
            self._lock.notify_all()
            self._lock.wait_for(lambda: "done" in box)
        self._credit(box["spent"])
        if "error" in box:
            raise box["error"]
        return box["value"]

    # --- jobs ----------------------------------------------------------------------------------------

    def submit(self, sequences: list[Sequence], params: SamplingParams,
               on_token: Callable[[int, Sequence], None] | None = None) -> Job:
        job = self.engine.job(sequences, params, on_token)  # a bad request fails here, in the caller's thread
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down: try again later")
            self._new.append(job)
            self._lock.notify_all()
        return job

    def wait(self, job: Job, timeout: float | None = None) -> list[Sequence]:
        with self._lock:
            if not self._lock.wait_for(lambda: job.finished or job.cancelled or self._error is not None, timeout):
                self._cancel.add(job)
                self._lock.notify_all()
                raise TimeoutError(f"the job was not done within {timeout} s")
            if not job.finished:
                raise EngineClosed(f"the engine stopped before the job was done: {self._error or 'cancelled'}")
        self._credit(job.usage)
        return job.results

    def cancel(self, job: Job) -> None:
        """Stop working on a job (a client went away): its rows leave at the next step."""
        with self._lock:
            if not job.finished:
                self._cancel.add(job)
                self._lock.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish what is in flight (up to `timeout` s), then fail what is left."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)
        with self._lock:
            if self._thread.is_alive() or self._jobs:
                self._cancel |= set(self._jobs)
                self._error = self._error or EngineClosed("the server shut down before this finished")
                self._lock.notify_all()
            elif not isinstance(self.engine, _Closed):
                # The model goes with the engine: whatever still holds this scheduler (an app, a handler) no
                # longer holds gigabytes of weights.
                self.engine = _Closed(self.engine.info)

    @property
    def load(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._jobs) + len(self._new)

    # --- the engine's thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._jobs or self._new or self._calls or self._closed)
                calls, self._calls = self._calls, []
            for work, box in calls:
                before = self.engine.usage.snapshot()
                try:
                    box["value"] = work()
                except Exception as e:  # noqa: BLE001 - the caller re-raises it
                    box["error"] = e
                box["spent"] = self.engine.usage - before
                with self._lock:
                    box["done"] = True
                    self._lock.notify_all()
            with self._lock:
                for job in self._new:  # only this thread touches the engine's queues
                    self._jobs.append(self.engine.enqueue(job))
                self._new.clear()
                if self._cancel:
                    self.engine.drop(self._cancel)
                    self._jobs = [j for j in self._jobs if j not in self._cancel]
                    self._cancel.clear()
                    self._lock.notify_all()
                if not self._jobs:
                    if self._closed:
                        return
                    continue
            try:
                self.engine.step()  # outside the lock: callers may queue while the model runs
            except BaseException as e:  # noqa: BLE001 - every waiting caller must hear of it
                with self._lock:
                    self._error, self._closed = e, True
                    self._lock.notify_all()
                return
            with self._lock:
                if any(j.finished for j in self._jobs):
                    self._jobs = [j for j in self._jobs if not j.finished]
                    self._lock.notify_all()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)  # states(), value_head, ...: the engine's own
