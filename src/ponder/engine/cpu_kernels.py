"""ponder's own CPU kernels (csrc/): int8 linear layers and paged decode attention, for AVX2 + FMA.

They compile together on first use (torch.utils.cpp_extension, about a minute) and torch caches
the build. On a CPU without AVX2 or without a compiler, `available()` says so and the engine keeps
its pure-PyTorch path.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

_NAME = "ponder_cpu_kernels"
_SOURCES = [Path(__file__).parent / "csrc" / name for name in ("int8_linear.cpp", "decode_attention.cpp")]


STALE_LOCK_S = 600  # a build takes one to two minutes here


@functools.cache
def load() -> ModuleType:
    from torch.utils.cpp_extension import _get_build_directory, load_inline

    # A build killed half way leaves torch's lock file behind, and every later load would wait on it
    # forever: a lock older than any build could be is stale.
    lock = Path(_get_build_directory(_NAME, verbose=False)) / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        log.warning("removing a stale build lock left by a killed build: %s", lock)
        lock.unlink(missing_ok=True)
    return load_inline(_NAME, cpp_sources=[p.read_text() for p in _SOURCES],
                       functions=["int8_linear", "decode_attention"],
                       extra_cflags=["-O3", "-mavx2", "-mfma", "-funroll-loops", "-fopenmp"],
                       extra_ldflags=["-fopenmp"], verbose=False)


@functools.cache
def available() -> bool:
    """AVX2 and FMA on this CPU, and the kernels compile."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2" not in flags or " fma" not in flags:
        return False
    try:
        load()
    except Exception as e:  # no compiler, no ninja: the PyTorch path still works
        log.warning("ponder's CPU kernels did not build (%s): staying with PyTorch's", e)
        return False
    return True
