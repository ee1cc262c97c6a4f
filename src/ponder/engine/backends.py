"""A Generator for a model by backend name: what the CLI, the evaluation harness and the server open."""

from __future__ import annotations

import functools

from ponder.engine.protocol import Generator
from ponder.errors import BadParameter

BACKENDS = ("native", "native-gguf", "native-fp32", "llamacpp", "vllm")


def open_generator(model: str, backend: str = "native", threads: int | None = None) -> Generator:
    """native: ponder's engine on its fast path (int8 weights where the CPU allows); native-gguf: the GGUF
    file's quantized blocks used as they are (memory-mapped, no dequantized copy); native-fp32: the exact
    path; llamacpp: llama.cpp on the model's GGUF file; vllm: vLLM on a GPU."""
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
    from ponder.engine.native import NativeEngine
    from ponder.models.loader import load

    if backend == "native-gguf":
        from ponder.engine import cpu_kernels
        from ponder.engine.gguf_linear import load_quantized
        from ponder.models.registry import resolve

        path = resolve(model)
        if path.suffix != ".gguf" or not cpu_kernels.available():
            raise BadParameter(f"the native-gguf backend needs a GGUF file and a CPU with AVX2 ({model} is {path}): "
                               "use --backend native")
        return NativeEngine(load_quantized(path), int8=True, name=model)
    return NativeEngine(load(model), int8=backend == "native", name=model)


@functools.cache
def shared_generator(model: str, backend: str = "native") -> Generator:
    """One generator per (model, backend) in this process: what the workers of a long job reuse."""
    return open_generator(model, backend)
