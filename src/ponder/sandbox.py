"""Run untrusted Python (model-written programs) in a separate, limited process.

Threat model. The code comes from a language model: mostly honest, sometimes buggy (infinite loops,
huge allocations, stray file writes), occasionally "creative" (reading the tests, calling out to
the network, spawning processes). The goal is that such code cannot damage the machine, leak the
host's secrets or files into its output, reach the network, or outlive its time limit, and that
every such attempt shows up as a failed candidate with a reason. It is *not* a boundary against a
determined attacker with native-code tricks: the Python-level layer below (an audit hook) can be
sidestepped by code that exploits an interpreter bug or finds an extension-module trick it does not
know, it does not see `os.stat` (the existence of files leaks), it judges a path given with `dir_fd`
as relative to the working directory, and it cannot stop races on paths (check, then swap a
symlink). The OS layers (1-5) hold whatever happens in Python, but they stop less: running as
nobody, a program could still read world-readable files (/etc/passwd) and write to world-writable
directories (/tmp); without namespaces only the hook keeps it off the network; and as root, without
layer 5, only the hook stops a fork bomb. Untrusted code from the open internet
belongs in a real boundary: a container or microVM (gVisor, Firecracker), nsjail/bubblewrap with a
seccomp filter and a read-only minimal root, or at least cgroups (pids.max, memory.max).

Layers, outermost first (`isolation_layers()` says which are active on this machine):

1. A child process in its own session; a wall-clock timeout kills the whole process group.
2. A fresh temporary working directory (removed afterwards) and a minimal environment: PATH, LANG,
   HOME and TMPDIR (both the temporary directory); nothing else of the parent's environment (no
   tokens, no keys). `python -I -S -B`: no user site, no PYTHON* variables, no site-packages.
3. Resource limits set in the child (soft = hard, so the candidate cannot raise them): CPU seconds,
   address space, processes (RLIMIT_NPROC: the target user's current task count plus a small
   margin, since the limit counts every task of that user), file size (also caps stdout and stderr,
   which go to files, not pipes), open files, no core dumps.
4. Namespaces via util-linux `unshare`, when the kernel allows it (probed once per process): a
   private network namespace (only a downed loopback: no network at all), plus IPC and, as root,
   mount namespaces.
5. As root only: the child drops to uid/gid 65534 (nobody) with no capabilities and no_new_privs.
   Root ignores RLIMIT_NPROC and every file permission, so without this a fork bomb would be
   stopped by layer 6 alone. The interpreter is bind-mounted read-only into the sandbox's private
   mount namespace, because it may live under a home directory that nobody cannot enter.
6. An audit hook (PEP 578) installed before the candidate runs. It ends the process (a "sandbox
   violation") on: sockets and syslog; fork, exec, spawn, os.system, subprocess and kill; opening
   for writing (or creating, renaming, deleting, chmod...) outside the working directory; opening
   or listing anything outside the working directory and the standard library (plus /dev/null,
   /dev/zero and /dev/urandom); importing ctypes, _posixsubprocess (so `import subprocess` fails) or
   the interpreter's test modules; the gc introspection and tracing calls that could reach the hook
   itself. The hook keeps its own references to everything it calls, so monkeypatching `os` or
   `builtins` does not blind it.

Linux only (resource, namespaces, /proc).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VIOLATION_EXIT = 113  # the bootstrap exits with this after the audit hook blocked something
SETUP_EXIT = 126  # the launcher could not set up the sandbox (mount failed, ...)
VIOLATION_MARKER = "[ponder-sandbox] blocked "
SANDBOX_UID = 65534  # nobody: what a root parent drops the child to
NPROC_MARGIN = 8  # tasks (processes and threads) the candidate may add to its user's count
MAX_OUTPUT_CHARS = 64 * 1024  # per stream, kept in SandboxResult (head and tail)
_DIR_PREFIX = "ponder-sbx-"


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # exited 0, within its limits, without a violation
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool  # the wall-clock limit ran out (the process group was killed)
    killed_reason: str | None  # why the sandbox stopped it: timeout, a limit, a violation
    seconds: float  # wall-clock time of the run

    @property
    def reason(self) -> str | None:
        """One line on why it failed (None when it passed)."""
        if self.passed:
            return None
        if self.killed_reason:
            return self.killed_reason
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return f"exit status {self.returncode}" + (f": {lines[-1].strip()}" if lines else "")


# ---------------------------------------------------------------- the code that runs in the child

# Runs as `python -I -S -B -c _BOOTSTRAP WORKDIR PROGRAM LIMITS`. Everything the hook uses is bound
# once, inside `_make_hook`, so later changes to os, posixpath or builtins cannot reach it; the hook
# itself is reachable only from the interpreter's hook list (gc introspection is blocked).
_BOOTSTRAP = (Path(__file__).parent / "sandbox_boot.py").read_text(encoding="utf-8")

# As root: mount the interpreter where nobody can reach it, then drop to nobody and run it.
_ROOT_LAUNCHER = r'''
mnt=$1 src=$2 dst=$3 setpriv=$4 uid=$5
shift 5
"$mnt" --bind -o ro "$src" "$dst" || exit 126
unset PWD OLDPWD  # the shell's own: the child's environment stays the four variables given
exec "$setpriv" --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all -- "$@"
'''


# ---------------------------------------------------------------- choosing the launcher

@dataclass(frozen=True)
class _Launcher:
    kind: str  # "ns+nobody" (root), "ns" (namespaces only), "plain"
    unshare: str | None = None
    mount: str | None = None
    setpriv: str | None = None

    @property
    def drops_user(self) -> bool:
        return self.kind == "ns+nobody"


def _interpreter() -> tuple[Path, Path]:
    """The base interpreter (not a venv's wrapper) and the prefix that holds it and its stdlib."""
    exe = Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))
    return exe, Path(os.path.realpath(sys.base_prefix))


def _candidate_launchers() -> list[_Launcher]:
    unshare, mount, setpriv = shutil.which("unshare"), shutil.which("mount"), shutil.which("setpriv")
    out: list[_Launcher] = []
    exe, prefix = _interpreter()
    if os.geteuid() == 0 and unshare and mount and setpriv and exe.is_relative_to(prefix):
        out.append(_Launcher("ns+nobody", unshare, mount, setpriv))
    if unshare:
        out.append(_Launcher("ns", unshare))
    out.append(_Launcher("plain"))
    return out


@functools.lru_cache(maxsize=1)
def _launcher() -> _Launcher:
    """The strongest launcher that works here, probed once per process."""
    for launcher in _candidate_launchers():
        if launcher.kind == "plain":
            break
        try:
            probe = _run(launcher, "import sys; sys.exit(0)", timeout_s=10, memory_mb=512, stdin="",
                         max_file_mb=1)
        except OSError as e:
            log.info("sandbox launcher %s unavailable: %s", launcher.kind, e)
            continue
        if probe.passed:
            log.info("sandbox launcher: %s", launcher.kind)
            return launcher
        log.info("sandbox launcher %s unavailable: %s", launcher.kind, probe.reason)
    log.warning("sandbox runs without namespaces (unshare unavailable): only rlimits and the audit hook")
    return _Launcher("plain")


def isolation_layers() -> tuple[str, ...]:
    """What isolates candidates on this machine, outermost first."""
    launcher = _launcher()
    layers = ["own session, process group killed on a wall-clock timeout",
              "fresh temporary working directory, minimal environment, python -I -S -B",
              "rlimits: cpu, address space, nproc, file size, open files, no core"]
    if launcher.kind != "plain":
        layers.append("network and ipc namespaces" + (" and a private mount namespace" if launcher.drops_user
                                                       else " (in a user namespace)" if os.geteuid() else ""))
    if launcher.drops_user:
        layers.append(f"unprivileged uid {SANDBOX_UID}, no capabilities, no_new_privs")
    layers.append("audit hook: no sockets, processes, ctypes; files only in the working dir and stdlib")
    return tuple(layers)


# ---------------------------------------------------------------- running

def run_python(code: str, *, timeout_s: float = 10, memory_mb: int = 1024, stdin: str = "",
               max_file_mb: int = 16) -> SandboxResult:
    """Run `code` as a Python program in the sandbox; never raises for anything the code does.

    max_file_mb caps every file the program writes, stdout and stderr included (beyond it the
    program is killed); the result keeps at most MAX_OUTPUT_CHARS of each stream.
    """
    if timeout_s <= 0 or memory_mb <= 0 or max_file_mb <= 0:
        raise ValueError("timeout_s, memory_mb and max_file_mb must be positive")
    return _run(_launcher(), code, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin,
                max_file_mb=max_file_mb)


def _run(launcher: _Launcher, code: str, *, timeout_s: float, memory_mb: int, stdin: str,
         max_file_mb: int) -> SandboxResult:
    top = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
    try:
        work, io_dir, mountpoint = top / "work", top / "io", top / "python"
        work.mkdir(mode=0o700)
        io_dir.mkdir(mode=0o700)  # the parent's: the child only gets descriptors
        program = work / "main.py"
        program.write_text(code, encoding="utf-8")
        (io_dir / "stdin").write_text(stdin, encoding="utf-8")
        if launcher.drops_user:
            mountpoint.mkdir()
            top.chmod(0o711)  # nobody may pass through to work/ and python/, not list top/
            for p in (work, program):
                os.chown(p, SANDBOX_UID, SANDBOX_UID)
        cpu = max(1, math.ceil(timeout_s)) + 1  # the wall clock normally fires first
        uid = SANDBOX_UID if launcher.drops_user else os.getuid()
        limits = f"{cpu}:{memory_mb << 20}:{_tasks_of(uid) + NPROC_MARGIN}:{max_file_mb << 20}:64"
        cmd = _command(launcher, mountpoint, [str(work), str(program), limits])
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work),
               "TMPDIR": str(work)}  # TMPDIR: tempfile must pick a directory the hook allows
        with (open(io_dir / "stdin", "rb") as fin, open(io_dir / "stdout", "wb") as fout,
              open(io_dir / "stderr", "wb") as ferr):
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=env,
                                    start_new_session=True)
            timed_out, status, cpu_used = _wait(proc, timeout_s)
            seconds = time.monotonic() - start
        stdout = _read_capped(io_dir / "stdout")
        stderr = _read_capped(io_dir / "stderr")
    finally:
        _remove(top)
    killed = _killed_reason(timed_out, status, stderr, cpu_used, cpu, timeout_s)
    return SandboxResult(passed=status == 0 and killed is None, returncode=status, stdout=stdout,
                         stderr=stderr, timed_out=timed_out, killed_reason=killed, seconds=seconds)


def _command(launcher: _Launcher, mountpoint: Path, boot_args: list[str]) -> list[str]:
    exe, prefix = _interpreter()
    py = ["-I", "-S", "-B", "-c", _BOOTSTRAP, *boot_args]
    if launcher.kind == "ns+nobody":
        assert launcher.unshare and launcher.mount and launcher.setpriv
        inner = mountpoint / exe.relative_to(prefix)
        return [launcher.unshare, "--mount", "--net", "--ipc", "--propagation", "private", "--",
                "/bin/sh", "-c", _ROOT_LAUNCHER, "sh", launcher.mount, str(prefix), str(mountpoint),
                launcher.setpriv, str(SANDBOX_UID), str(inner), *py]
    if launcher.kind == "ns":
        assert launcher.unshare
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        return [launcher.unshare, *user, "--net", "--ipc", "--", str(exe), *py]
    return [str(exe), *py]


def _wait(proc: subprocess.Popen, timeout_s: float) -> tuple[bool, int, float]:
    """Wait up to timeout_s; kill the process group; reap. (timed out, returncode, cpu seconds)."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    timed_out = False
    # WNOWAIT leaves the exited child unreaped, so its pid (the group id) cannot be reused before
    # the group is killed below.
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
    _kill_group(proc.pid)
    _, wstatus, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)  # keeps Popen from waiting again
    return timed_out, proc.returncode, usage.ru_utime + usage.ru_stime


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left (a zombie leader does not count)


def _tasks_of(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) whose real uid is uid."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue  # it exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (KeyError, ValueError, IndexError):
            continue
    return total


def _read_capped(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_OUTPUT_CHARS * 4 + 1)  # enough bytes for MAX_OUTPUT_CHARS characters
        size = os.fstat(f.fileno()).st_size
    text = data.decode("utf-8", "replace")
    if len(text) <= MAX_OUTPUT_CHARS and size == len(data):
        return text
    half = MAX_OUTPUT_CHARS // 2
    with open(path, "rb") as f:  # the tail holds the traceback: keep both ends
        f.seek(max(0, size - half * 4))
        tail = f.read().decode("utf-8", "replace")[-half:]
    return f"{text[:half]}\n[... {size} bytes in all, truncated ...]\n{tail}"


def _killed_reason(timed_out: bool, status: int, stderr: str, cpu_used: float, cpu_limit: int,
                   timeout_s: float) -> str | None:
    if timed_out:
        return f"timeout: still running after {timeout_s:g} s (wall clock)"
    if status == VIOLATION_EXIT and VIOLATION_MARKER in stderr:
        line = stderr[stderr.rindex(VIOLATION_MARKER):].splitlines()[0]
        return "sandbox violation: " + line[len(VIOLATION_MARKER):]
    if status == SETUP_EXIT:
        return "sandbox setup failed: " + (stderr.strip().splitlines() or ["no message"])[-1]
    if status < 0:
        sig = -status
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_limit - 0.5):
            return f"cpu time limit ({cpu_limit} s)"
        if sig == signal.SIGXFSZ:
            return "file size limit (output or a written file too large)"
        return f"killed by {signal.Signals(sig).name}" if sig in signal.valid_signals() else f"signal {sig}"
    tail = stderr.strip().splitlines()[-1:] if stderr.strip() else []
    if status != 0 and tail and tail[0].startswith("MemoryError"):
        return "memory limit"
    if status != 0 and tail and "[Errno 27]" in tail[0]:  # EFBIG: Python ignores SIGXFSZ
        return "file size limit (output or a written file too large)"
    return None


def _remove(top: Path) -> None:
    """Delete the sandbox directory; never descend into the interpreter's mountpoint."""
    for child in top.iterdir():
        if child.name == "python":
            try:
                child.rmdir()  # empty unless the mount leaked into this namespace: then leave it
            except OSError as e:
                log.warning("left %s in place: %s", child, e)
        elif child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, onerror=_force)  # rmtree never follows symlinks out of the tree
        else:
            child.unlink(missing_ok=True)
    try:
        top.rmdir()
    except OSError as e:
        log.warning("could not remove sandbox directory %s: %s", top, e)


def _force(func: Callable[[str], Any], path: str, _exc: Any) -> None:
    """A candidate may have removed its own permissions on a directory: restore them and retry."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError as e:
        log.warning("could not remove %s: %s", path, e)
