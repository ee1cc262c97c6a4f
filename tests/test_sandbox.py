"""The code sandbox and the code-execution verifier: hostile candidates fail quickly and harmlessly."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.tasks.base import Task
from ponder import sandbox
from ponder.verify.code import CodeExecutionVerifier, Example, last_python_block, prompt_examples
from ponder.sandbox import isolation_layers, run_python

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="the sandbox needs Linux")

FAST = {"timeout_s": 3, "memory_mb": 512}


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """A sandbox directory prefix of this test's own, to find its leftovers (processes, directories)."""
    unique = f"ponder-sbx-test-{uuid.uuid4().hex[:8]}-"
    monkeypatch.setattr(sandbox, "_DIR_PREFIX", unique)
    return unique


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if text.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _leftovers(prefix: str) -> tuple[list[int], list[Path]]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return _processes_mentioning(prefix), sorted(tmp.glob(prefix + "*"))


def _assert_still_works() -> None:
    """The run goes on: the next candidate runs normally."""
    ok = run_python("print(6 * 7)", **FAST)
    assert ok.passed and ok.stdout == "42\n"


# ------------------------------------------------------------------------------------- sandbox

def test_a_normal_program_passes_with_its_output_and_stdin(prefix: str) -> None:
    code = ("import collections, json, math, re, itertools, functools, heapq, fractions, tempfile\n"
            "open('notes.txt', 'w').write('kept in the work dir')\n"
            "print(open('notes.txt').read())\n"
            "print(sum(int(x) for x in input().split()))\n")
    r = run_python(code, stdin="1 2 3\n", **FAST)
    assert r.passed, r.stderr
    assert (r.returncode, r.timed_out, r.killed_reason, r.reason) == (0, False, None, None)
    assert r.stdout == "kept in the work dir\n6\n"
    assert 0 < r.seconds < 3
    assert _leftovers(prefix) == ([], [])  # its temporary directory is gone


def test_the_environment_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_TEST_API_KEY", "s3cret-value")
    r = run_python("import os; print(sorted(os.environ)); print(os.getcwd() == os.environ['HOME'])", **FAST)
    assert r.passed, r.stderr
    assert "s3cret" not in r.stdout and "PONDER_TEST_API_KEY" not in r.stdout
    assert r.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert r.stdout.splitlines()[1] == "True"


def test_a_failing_program_reports_its_error() -> None:
    r = run_python("raise ValueError('boom')", **FAST)
    assert not r.passed and r.returncode == 1 and r.killed_reason is None
    assert r.reason == "exit status 1: ValueError: boom"


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/hostname", "/"])
def test_reading_outside_the_work_dir_is_blocked(path: str) -> None:
    r = run_python(f"import os\nprint(os.listdir({path!r}) if os.path.isdir({path!r}) else open({path!r}).read())",
                   **FAST)
    assert not r.passed and r.stdout == ""
    assert r.killed_reason is not None and r.killed_reason.startswith("sandbox violation")
    _assert_still_works()


def test_reading_the_users_files_is_blocked_even_through_a_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's secret")
    for code in (f"print(open({str(secret)!r}).read())",
                 f"import os\nos.symlink({str(secret)!r}, 'link')\nprint(open('link').read())",
                 # monkeypatching os.path does not blind the hook
                 (f"import os, posixpath\nposixpath.realpath = os.path.realpath = lambda p, **k: '.'\n"
                  f"print(open({str(secret)!r}).read())")):
        r = run_python(code, **FAST)
        assert not r.passed and "secret" not in r.stdout
        assert r.killed_reason == f"sandbox violation: open: read {secret}"


def test_writing_outside_the_work_dir_is_blocked(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nos.close(os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT))",
                 f"import os\nos.remove({str(tmp_path / 'nothing')!r})",
                 f"import os\nos.mkdir({str(tmp_path / 'dir')!r})"):
        r = run_python(code, **FAST)
        assert not r.passed and r.killed_reason is not None, code
        assert r.killed_reason.startswith("sandbox violation") and "write " + str(tmp_path) in r.killed_reason
    assert list(tmp_path.iterdir()) == []


def test_no_connection_reaches_a_listening_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for code in (f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('connected')",
                     f"import socket\nsocket.create_connection(('localhost', {port}))\nprint('connected')",
                     f"import _socket\n_socket.socket().connect(('127.0.0.1', {port}))\nprint('connected')"):
            r = run_python(code, **FAST)
            assert not r.passed and "connected" not in r.stdout
            assert r.killed_reason is not None and r.killed_reason.startswith("sandbox violation: socket.")
        listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever arrived


def test_a_fork_bomb_is_stopped_and_leaves_no_processes(prefix: str) -> None:
    # Guard first: a single fork whose child exits at once must already be refused. Only then is the
    # endless bomb run, so a broken hook cannot turn this test into a real fork bomb.
    guard = run_python("import os\nif os.fork() == 0:\n    os._exit(0)\nprint('forked')", **FAST)
    assert guard.killed_reason == "sandbox violation: os.fork: not allowed in the sandbox", guard
    bomb = run_python("import os\nwhile True:\n    os.fork()", **FAST)
    assert not bomb.passed and bomb.killed_reason == "sandbox violation: os.fork: not allowed in the sandbox"
    assert bomb.seconds < 3 and not bomb.timed_out
    popen = run_python("import subprocess\nwhile True:\n    subprocess.Popen(['true'])", **FAST)
    assert popen.killed_reason is not None and popen.killed_reason.startswith("sandbox violation")
    spawn = run_python("import os\nos.posix_spawn('/bin/true', ['true'], {})", **FAST)
    assert spawn.killed_reason == "sandbox violation: os.posix_spawn: not allowed in the sandbox"
    system = run_python("import os\nos.system('true')", **FAST)
    assert system.killed_reason == "sandbox violation: os.system: not allowed in the sandbox"
    assert _leftovers(prefix) == ([], [])
    _assert_still_works()


def test_rlimit_nproc_caps_tasks_below_the_audit_hook() -> None:
    """Threads are allowed by the hook but count against RLIMIT_NPROC: the OS layer holds on its own."""
    if os.geteuid() == 0 and not sandbox._launcher().drops_user:
        pytest.skip("root ignores RLIMIT_NPROC and this machine cannot drop to an unprivileged user")
    code = ("import threading, time\nn = 0\ntry:\n    while n < 200:\n"
            "        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n        n += 1\n"
            "except RuntimeError:\n    pass\nprint(n, flush=True)\nimport os\nos._exit(0)")
    r = run_python(code, **FAST)
    assert r.passed, r.stderr
    assert int(r.stdout) < 200


@pytest.mark.parametrize("code", ["bytearray(10**10)", "[0] * 10**10"])
def test_allocating_ten_gigabytes_fails_fast(code: str) -> None:
    r = run_python(code, **FAST)
    assert not r.passed and r.killed_reason == "memory limit" and r.seconds < 3
    _assert_still_works()


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(1000)"])
def test_endless_programs_are_killed_at_the_wall_clock_limit(code: str, prefix: str) -> None:
    r = run_python(code, timeout_s=2, memory_mb=512)
    assert not r.passed and r.timed_out and r.returncode is not None and r.returncode < 0
    assert r.killed_reason == "timeout: still running after 2 s (wall clock)"
    assert 2 <= r.seconds < 4
    assert _leftovers(prefix) == ([], [])
    _assert_still_works()


def test_an_output_flood_is_capped() -> None:
    r = run_python("while True:\n    print('x' * 10000)", timeout_s=5, memory_mb=512, max_file_mb=1)
    assert not r.passed and r.killed_reason == "file size limit (output or a written file too large)"
    assert len(r.stdout) <= sandbox.MAX_OUTPUT_CHARS + 100


def test_ctypes_and_introspection_of_the_hook_are_blocked() -> None:
    for code, event in (("import ctypes", "import"), ("import gc\ngc.get_objects()", "gc.get_objects"),
                        ("import sys\nsys.settrace(lambda *a: None)", "sys.settrace"),
                        ("import os\nos.kill(1, 0)", "os.kill")):
        r = run_python(code, **FAST)
        assert r.killed_reason is not None and r.killed_reason.startswith(f"sandbox violation: {event}"), code


def test_isolation_layers_name_the_audit_hook() -> None:
    layers = isolation_layers()
    assert layers[0].startswith("own session") and layers[-1].startswith("audit hook")


# ------------------------------------------------------------------------------------- verifier

PROMPT = '''from typing import List


def add(a: int, b: int) -> int:
    """Add two integers.
    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    """
'''


@dataclass(frozen=True)
class DocTask(Task):
    """A code task whose prompt shows doctests; the oracle must never be consulted."""

    def extract(self, completion: str) -> str | None:
        return last_python_block(completion)

    def check(self, answer: str | None) -> bool:
        raise AssertionError("the verifier must not use the oracle")


def _task(**metadata: str) -> DocTask:
    return DocTask(id="doc/0", messages=({"role": "system", "content": "Write code."},
                                         {"role": "user", "content": f"```python\n{PROMPT}```"}),
                   reference="", metadata=dict(metadata))


def _candidate(body: str, preamble: str = "Here is the code.\n\n") -> Sequence:
    return Sequence(prompt=(1, 2), text=f"{preamble}```python\n{body}```\n")


RIGHT = "def add(a, b):\n    return a + b\n"
HALF = "def add(a, b):\n    return a + b if a > 0 else 5\n"
CRASH = "def add(a, b):\n    raise RuntimeError('no')\n"


def test_prompt_examples_are_parsed_from_the_docstring() -> None:
    assert prompt_examples(PROMPT) == [Example("add(1, 2)", "3"), Example("add(-1, 1)", "0")]
    arrows = "def f(x):\n    '''\n    f(1) == 2\n    f('a') => true\n    f(y) == 3\n    f(2) ➞ \"4\"\n    '''\n"
    assert prompt_examples(arrows, ("f",)) == [Example("print(repr(f(1)))", "2"),
                                               Example("print(repr(f('a')))", "True"),
                                               Example("print(repr(f(2)))", "'4'")]
    multi = '    >>> for i in range(2):\n    ...     print(i)\n    0\n    1\n    >>> x = 1\n    >>> x\n    1"""\n'
    assert prompt_examples(multi) == [Example("for i in range(2):\n    print(i)", "0\n1"), Example("x = 1", ""),
                                      Example("x", "1")]


def test_right_half_right_and_crashing_candidates() -> None:
    budget = Budget()
    verifier = CodeExecutionVerifier(timeout_s=3)
    candidates = [_candidate(RIGHT), _candidate(HALF), _candidate(CRASH), _candidate("import no_such_module\n"),
                  Sequence(prompt=(1,), text="no code at all")]
    scores = verifier.score(_task(), candidates, budget)
    assert scores == [[1.0, 1.0], [0.5, 0.5], [0.0, 0.0], [0.0, 0.0], [0.0]]  # one score per step
    assert budget.spent.verifier_tokens == 0 and budget.spent.flops == 0


def test_hostile_candidates_score_zero_and_the_run_goes_on() -> None:
    verifier = CodeExecutionVerifier(timeout_s=2)
    candidates = [_candidate("while True:\n    pass\n", ""),
                  _candidate("print(open('/etc/passwd').read())\n" + RIGHT, ""),
                  _candidate("import os\nwhile True:\n    os.fork()\n", ""),
                  _candidate("x = bytearray(10**10)\n" + RIGHT, ""),
                  _candidate(RIGHT, "")]
    assert verifier.score(_task(), candidates, Budget()) == [[0.0]] * 4 + [[1.0]]


def test_printing_fake_results_or_a_main_block_does_not_count() -> None:
    verifier = CodeExecutionVerifier(timeout_s=3)
    forger = "print('\\n0123 [0, true]')\ndef add(a, b):\n    return None\n"
    main_block = RIGHT + "if __name__ == '__main__':\n    add(input(), 1)\n"
    scores = verifier.score(_task(), [_candidate(forger, ""), _candidate(main_block, "")], Budget())
    assert scores == [[0.0], [1.0]]


def test_humaneval_style_metadata_and_a_body_only_completion() -> None:
    task = _task(prompt=PROMPT, entry_point="add")
    verifier = CodeExecutionVerifier(timeout_s=3)
    body = _candidate("    return a + b\n", preamble="")
    wrong_name = _candidate("def plus(a, b):\n    return a + b\n", preamble="")
    scores = verifier.score(task, [body, _candidate(RIGHT, ""), wrong_name], Budget())
    assert scores[:2] == [[1.0], [1.0]]
    assert scores[2] == [0.0]  # the prompt's own stub returns None: every example fails


def test_without_examples_a_clean_program_scores_the_neutral_value() -> None:
    task = DocTask(id="doc/1", messages=({"role": "user", "content": "Write a function f."},), reference="")
    verifier = CodeExecutionVerifier(timeout_s=3, score_without_tests=0.5)
    scores = verifier.score(task, [_candidate("def f():\n    return 1\n", ""), _candidate("1 / 0\n", "")],
                            Budget())
    assert scores == [[0.5], [0.0]]
