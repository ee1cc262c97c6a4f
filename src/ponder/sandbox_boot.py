"""The sandbox's bootstrap: the child runs this file's text as `python -I -S -B -c TEXT WORKDIR PROGRAM LIMITS`
(see `sandbox`). It sets the resource limits, installs the audit hook, then runs the candidate as
__main__. Never imported: it is run, as the text of `-c`, in the sandboxed interpreter only.
"""
# ruff: noqa
import os, sys, resource, stat

def _limit(spec):
    cpu, mem, nproc, fsize, nofile = (int(x) for x in spec.split(":"))
    for res, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                            (resource.RLIMIT_NPROC, nproc, nproc), (resource.RLIMIT_FSIZE, fsize, fsize),
                            (resource.RLIMIT_NOFILE, nofile, nofile), (resource.RLIMIT_CORE, 0, 0)):
        resource.setrlimit(res, (soft, hard))

def _make_hook(work, read_roots):
    _write, _exit, _getcwd, _lstat, _readlink = os.write, os._exit, os.getcwd, os.lstat, os.readlink
    _islnk, _type, _str, _bytes, _int, _OSError = stat.S_ISLNK, type, str, bytes, int, OSError
    _decode, _getitem, _full, _getpid = bytes.decode, str.__getitem__, slice(None), os.getpid
    _list, _reversed, _len, _isinstance = list, reversed, len, isinstance
    _wflags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    _devices = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
    _refuse_prefix = ("socket.", "ctypes.", "syslog.", "sqlite3.enable_load_extension",
                      "sqlite3.load_extension")
    _refuse = frozenset(("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                         "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
                         "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
                         "sys.setprofile", "fcntl.ioctl", "os.startfile", "os.unshare", "os.setns"))
    _blocked_modules = frozenset(("ctypes", "_ctypes", "_ctypes_test", "_posixsubprocess", "_testcapi",
                                  "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testsinglephase",
                                  "_testimportmultiple", "_xxsubinterpreters", "_xxinterpchannels",
                                  "_xxtestfuzz"))
    # path-taking events: which positional arguments are paths, and whether they are written
    _write_paths = {"os.mkdir": (0,), "os.rmdir": (0,), "os.remove": (0,), "os.rename": (0, 1),
                    "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,),
                    "os.chown": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
                    "os.setxattr": (0,), "os.removexattr": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
                    "shutil.rmtree": (0,), "sqlite3.connect": (0,)}
    _read_paths = {"os.listdir": (0,), "os.scandir": (0,), "os.chdir": (0,), "os.listxattr": (0,),
                   "os.getxattr": (0,), "glob.glob": (0,), "glob.glob/2": (0,)}

    def fail(event, detail):
        _write(2, ("\n[ponder-sandbox] blocked " + event + ": " + detail + "\n").encode("utf-8", "replace"))
        _exit(113)

    def resolve(p):
        # realpath with the hook's own references: symlinks followed, ".." applied after them
        if not p.startswith("/"):
            p = _getcwd() + "/" + p
        todo = _list(_reversed(p.split("/")))
        out = []
        hops = 0
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if out:
                    out.pop()
                continue
            here = "/" + "/".join(out + [part])
            try:
                st = _lstat(here)
            except _OSError:
                out.append(part)
                continue
            if _islnk(st.st_mode):
                hops += 1
                if hops > 40:
                    return None
                target = _readlink(here)
                if target.startswith("/"):
                    out = []
                todo.extend(_reversed(target.split("/")))
                continue
            out.append(part)
        return "/" + "/".join(out)

    def as_str(p):
        # an exact str copy: a str subclass could lie through overridden methods
        t = _type(p)
        if t is _str or _isinstance(p, _str):
            return _getitem(p, _full)
        if t is _bytes:
            return _decode(p, "utf-8", "surrogateescape")
        return None

    def inside(path, roots):
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    def check(event, p, write):
        if p is None:
            p = "."
        if _type(p) is _int:
            return  # a descriptor: opening it was checked
        s = as_str(p)
        if s is None:
            fail(event, "a path that is not a str or bytes")
        real = resolve(s)
        if real is None:
            fail(event, "too many symlinks: " + s)
        if real in _devices:
            return
        if not inside(real, (work,) if write else read_roots):
            fail(event, ("write " if write else "read ") + real)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            write = (_type(mode) is _str and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) \
                or (_type(flags) is _int and flags & _wflags != 0)
            check(event, path, write)
        elif event == "import":
            name = as_str(args[0]) or ""
            for part in name.split("."):  # any part: _imp.create_dynamic accepts "x._ctypes"
                if part in _blocked_modules:
                    fail(event, name)
        elif event in _refuse or event.startswith(_refuse_prefix):
            fail(event, "not allowed in the sandbox")
        elif event == "resource.prlimit":
            if args[0] not in (0, _getpid()):
                fail(event, "another process")
        elif event in _write_paths:
            if event == "sqlite3.connect" and args[0] == ":memory:":
                return
            for i in _write_paths[event]:
                if i < _len(args):
                    check(event, args[i], True)
        elif event in _read_paths:
            for i in _read_paths[event]:
                if i < _len(args):
                    check(event, args[i], False)

    return hook

def _main():
    work, program, limits = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(program, encoding="utf-8") as f:
        code = compile(f.read(), program, "exec")
    real = os.path.realpath
    roots = {real(work)} | {real(p) for p in sys.path if p}
    _limit(limits)
    sys.addaudithook(_make_hook(real(work), tuple(sorted(roots))))
    sys.argv = [program]
    return code

if __name__ == "__main__":
    _code = _main()
    del _main, _make_hook, _limit
    _module = type(sys)("__main__")  # a fresh __main__ for the candidate: pickle and `import __main__` work
    _module.__builtins__ = __builtins__
    sys.modules["__main__"] = _module
    exec(_code, _module.__dict__)
