"""ponder's own CPU kernels (csrc/): int8 linear layers and paged decode attention, for AVX2 + FMA, and
GGUF's quantized blocks multiplied as they are, built once for AVX2 and once for AVX-512 VNNI.

They compile on first use (torch.utils.cpp_extension, about a minute each) and torch caches the
builds. On a CPU without AVX2 or without a compiler, `available()` says so and the engine keeps
its pure-PyTorch path.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from types import ModuleType

from ponder.errors import BadParameter

log = logging.getLogger(__name__)

_NAME = "ponder_cpu_kernels"
# Concatenated into one unit each: vec_exp.cpp first, for the files after it.
_SOURCES = [Path(__file__).parent / "csrc" / name for name in ("vec_exp.cpp", "int8_linear.cpp", "decode_attention.cpp",
                                                                "sample_rows.cpp")]


STALE_LOCK_S = 600  # a build takes one to two minutes here


_BASE_FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-funroll-loops", "-fopenmp"]
# The GGUF kernels' two builds: the same source, its lane dot one instruction (vpdpbusd) or two.
GGUF_BUILDS = {"avx2": [], "avx512-vnni": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]}


def _build(name: str, sources: list[Path], functions: list[str], flags: list[str]) -> ModuleType:
    from torch.utils.cpp_extension import _get_build_directory, load_inline

    # A build killed half way leaves torch's lock file behind, and every later load would wait on it
    # forever: a lock older than any build could be is stale.
    lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        log.warning("removing a stale build lock left by a killed build: %s", lock)
        lock.unlink(missing_ok=True)
    return load_inline(name, cpp_sources=[p.read_text() for p in sources], functions=functions,
                       extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False)


@functools.cache
def load() -> ModuleType:
    return _build(_NAME, _SOURCES, ["int8_linear", "decode_attention", "sample_rows"], _BASE_FLAGS)


def cpu_flags() -> set[str]:
    for line in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def best_gguf_isa() -> str:
    """The GGUF kernels' build for this CPU: AVX-512 VNNI where it has it, else AVX2. PONDER_GGUF_ISA=avx2 picks
    the AVX2 build on any machine (to measure it, or to rule the other out)."""
    forced = os.environ.get("PONDER_GGUF_ISA")
    if forced:
        if forced not in GGUF_BUILDS:
            raise BadParameter(f"PONDER_GGUF_ISA={forced!r}: use one of {', '.join(GGUF_BUILDS)}")
        return forced
    return "avx512-vnni" if {"avx512_vnni", "avx512vl", "avx512bw"} <= cpu_flags() else "avx2"


@functools.cache
def load_gguf(isa: str | None = None) -> ModuleType:
    """The GGUF matmul kernels built for `isa` (default: the best this CPU runs)."""
    isa = isa or best_gguf_isa()
    # One unit: the whole-layer decode step calls the matmul and the decode attention directly.
    sources = [Path(__file__).parent / "csrc" / name
               for name in ("vec_exp.cpp", "gguf_matmul.cpp", "decode_attention.cpp", "gguf_decode.cpp")]
    return _build(f"ponder_gguf_{isa.replace('-', '_')}", sources, ["gguf_matmul", "gguf_isa", "gguf_decode_layer"],
                  _BASE_FLAGS + GGUF_BUILDS[isa])


@functools.cache
def available() -> bool:
    """AVX2, FMA and F16C on this CPU, and the kernels compile."""
    if not {"avx2", "fma", "f16c"} <= cpu_flags():
        return False
    try:
        load()
    except Exception as e:  # no compiler, no ninja: the PyTorch path still works
        log.warning("ponder's CPU kernels did not build (%s): staying with PyTorch's", e)
        return False
    return True


@functools.cache
def gguf_available() -> bool:
    """`available()`, and the GGUF kernels build for this CPU."""
    if not available():
        return False
    try:
        load_gguf()
    except Exception as e:  # an old compiler without AVX-512 VNNI, say: the int8 path still works
        log.warning("ponder's GGUF kernels did not build (%s): use --backend native", e)
        return False
    return True
