"""A Generator for a model by backend name: what the CLI, the evaluation harness and the server open."""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

import numpy as np

from ponder.engine.protocol import Generator
from ponder.errors import BadParameter

log = logging.getLogger(__name__)

BACKENDS = ("native", "native-gguf", "native-fp32", "llamacpp", "vllm")


def open_generator(model: str, backend: str = "native", threads: int | None = None) -> Generator:
    """native: ponder's engine on its fast path (int8 weights where the CPU allows); native-gguf: the GGUF
    file's quantized blocks used as they are (memory-mapped, no dequantized copy; keys and values kept in fp16,
    as llama.cpp keeps them); native-fp32: the exact path; llamacpp: llama.cpp on the model's GGUF file; vllm:
    vLLM on a GPU."""
    if backend not in BACKENDS:
        raise BadParameter(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "vllm":
        from ponder.engine.vllm import open_vllm

        return open_vllm(model)
    if backend == "llamacpp":
        from ponder.engine.llamacpp import LlamaCppEngine
        from ponder.models.registry import resolve

        path = resolve(model)
        if path.suffix != ".gguf":
            raise BadParameter(f"the llamacpp backend needs a GGUF file, and {model} is {path}: use --backend native")
        return LlamaCppEngine(path, n_threads=threads or 2)
    import torch

    from ponder.engine import cpu_kernels
    from ponder.engine.native import NativeEngine
    from ponder.models.loader import load
    from ponder.models.registry import resolve

    path = resolve(model)
    # the size first: building the GGUF kernels (a minute on a fresh machine) is for models that need them
    if backend == "native" and path.suffix == ".gguf" and too_big_to_copy(path) and cpu_kernels.gguf_available():
        log.warning("%s: its fp32 copy (%.0f GB) would not fit in this machine's memory: running on the file's "
                    "quantized blocks as they are (--backend native-gguf)", model, fp32_bytes(path) / 1e9)
        backend = "native-gguf"
    if backend == "native-gguf":
        from ponder.engine.gguf_linear import load_quantized

        if path.suffix != ".gguf":
            raise BadParameter(f"the native-gguf backend runs GGUF files, and {path} is not one: use --backend native")
        if not cpu_kernels.gguf_available():
            raise BadParameter("the native-gguf backend needs a CPU with AVX2, FMA and F16C and a C++ compiler: "
                               "use --backend native")
        return NativeEngine(load_quantized(path), int8=True, name=model, kv_dtype=torch.float16)  # as llama.cpp
    return NativeEngine(load(model), int8=backend == "native", name=model)


@functools.cache  # read from the file's header once a process
def fp32_bytes(path: Path) -> int:
    """What a GGUF model's dequantized fp32 copy takes."""
    from ponder.models.gguf import open_gguf

    return 4 * sum(int(np.prod(t.shape)) for t in open_gguf(path).tensors)


def too_big_to_copy(path: Path) -> bool:
    """Whether the fp32 copy the int8 path starts from would take more than half of this machine's memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # No GGUF type is under 1.5 bits a weight, so a copy is at most ~21x the file: a small file needs no parsing.
    if 21 * path.stat().st_size <= total // 2:
        return False
    return fp32_bytes(path) > total // 2


@functools.cache
def shared_generator(model: str, backend: str = "native") -> Generator:
    """One generator per (model, backend) in this process: what the workers of a long job reuse."""
    return open_generator(model, backend)


# Held while a job's item opens what it shares (the model, a verifier on it): items run at once in threads would
# each open a copy of the model otherwise (functools.cache does not make the first callers wait for each other).
OPENING = threading.RLock()


def shared_engine(model: str, backend: str, shared_by_threads: bool) -> Generator:
    """What an item of a long job runs on: `shared_generator`, or `shared_scheduler` when items run at once."""
    with OPENING:
        return (shared_scheduler if shared_by_threads else shared_generator)(model, backend)


@functools.cache
def shared_scheduler(model: str, backend: str = "native") -> Generator:
    """`shared_generator`'s engine behind a Scheduler: the calls of several threads (items of a job run at once)
    batched together, each thread charged for its own work."""
    from ponder.engine.batched import BatchedGenerator
    from ponder.engine.scheduler import Scheduler

    engine = shared_generator(model, backend)
    if not isinstance(engine, BatchedGenerator):
        check_concurrent(2, backend)
    return Scheduler(engine)


def check_concurrent(concurrent: int, backend: str, ray: str | None = None) -> None:
    """`--concurrent` (items at once through one engine), said before anything loads."""
    if concurrent < 1 or (concurrent > 1 and (ray or backend not in ("native", "native-gguf", "native-fp32"))):
        raise BadParameter("--concurrent takes a number from 1, on ponder's own engine (native, native-gguf, "
                           "native-fp32) without --ray")
