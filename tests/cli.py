"""Running the installed `ponder` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PONDER = Path(sys.executable).parent / "ponder"


def ponder(*args: str, env: dict[str, str] | None = None, home: Path | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(env if env is not None else os.environ)
    if home is not None:
        env["PONDER_HOME"] = str(home)
    return subprocess.run([str(PONDER), *args], capture_output=True, text=True, env=env, timeout=timeout)


PROGRESS = re.compile(r"^[\w .-]+: .+, .+ left$")  # what a long job reports as it goes (ponder.progress)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed with exactly one line on stderr, `error: ...`, and no traceback (besides progress lines)."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]
