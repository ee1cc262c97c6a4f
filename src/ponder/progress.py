"""Progress as users expect it: a live bar in a terminal, and in a log file a line every so often.

Both say what is done of the total, the rate and the time left. rich draws the bar; in a file it would draw
nothing until the end, so there a plain line is written every `every` seconds (PONDER_PROGRESS_EVERY overrides
it) and at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    """`with Progress(total, "evaluating") as p: p.advance()` (items) or `p.update(completed)` (bytes)."""

    def __init__(self, total: float, label: str, done: float = 0, unit: str = "items", every: float = 30.0,
                 stream: TextIO | None = None, info: Callable[[], str] | None = None, enabled: bool = True):
        self.enabled = enabled  # False: shows nothing (another process of a distributed run shows it)
        self.total, self.label, self.done, self.unit = total, label, done, unit
        self.every = float(os.environ.get("PONDER_PROGRESS_EVERY") or every)  # seconds between lines in a log
        self.stream = stream or sys.stderr
        self.info = info  # extra text for each line (a loss, tokens/s)
        self.started, self.first, self.last_line = time.monotonic(), done, time.monotonic()
        self.bar: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and self.stream.isatty():
            from rich import progress as rp
            from rich.console import Console

            counted = [rp.DownloadColumn(), rp.TransferSpeedColumn()] if self.unit == "bytes" else \
                [rp.MofNCompleteColumn()]
            self.bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), *counted,
                                   rp.TextColumn("{task.fields[info]}"), rp.TimeElapsedColumn(),
                                   rp.TimeRemainingColumn(), console=Console(file=self.stream))
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done, info="")
            self.bar.start()
        return self

    def advance(self, by: float = 1) -> None:
        self.update(self.done + by)

    def update(self, completed: float) -> None:
        self.done = completed
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, info=self.info() if self.info else "")
        elif self.enabled and time.monotonic() - self.last_line >= self.every:
            self._line()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.first) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        if self.unit == "bytes":
            counted = f"{self.done / 1e6:,.0f} of {self.total / 1e6:,.0f} MB, {rate / 1e6:.1f} MB/s"
        else:
            counted = f"{self.done:g} of {self.total:g} {self.unit}, {rate * 60:.1f} a minute"
        extra = f", {self.info()}" if self.info else ""
        return f"{self.label}: {counted}{extra}, {_duration(left)} left"

    def _line(self) -> None:
        self.last_line = time.monotonic()
        print(self.line(), file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.enabled and self.done != self.first:
            self._line()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"
