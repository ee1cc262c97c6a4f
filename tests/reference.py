"""llama.cpp (through llama-cpp-python) as the reference for the real GGUF models."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from ponder.models.loader import LoadedModel, load
from ponder.models.registry import model_dir, ponder_home, resolve

REAL_MODELS = [
    "smollm2-135m-instruct",
    pytest.param("qwen2.5-coder-0.5b-instruct", marks=pytest.mark.slow),
]


@functools.cache
def ponder_model(name: str) -> LoadedModel:
    if not model_dir(name).exists():
        pytest.skip(f"{name} is not pulled: `make test` pulls it (ponder pull {name})")
    return load(name)


@functools.lru_cache(maxsize=1)  # one llama.cpp model alive at a time: an F32 copy of the 0.5B is 2 GB
def llama_cpp_model(name: str, full_precision: bool = False):  # noqa: ANN201
    """llama.cpp on the pulled GGUF, or on its F32 copy (`full_precision`); an F32 KV cache as ponder's."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path = f32_copy(name) if full_precision else resolve(name)
    return llama_cpp.Llama(str(path), n_ctx=1024, n_batch=512, n_threads=2, logits_all=True, verbose=False,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)


def llama_cpp_logits(llm, tokens: list[int]) -> np.ndarray:  # noqa: ANN001
    """Logits at every position, teacher-forced."""
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)])


def llama_cpp_greedy(llm, prompt: list[int], n: int) -> list[int]:  # noqa: ANN001
    llm.reset()
    llm.eval(prompt)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def f32_copy(name: str) -> Path:
    """The same GGUF with every tensor dequantized to F32 (metadata and layout untouched), made once.

    llama.cpp multiplies quantized weights by activations it first rounds to 8 bits; on an F32 copy
    it computes in full precision, so any difference left is the port's, not the quantization's.
    """
    import gguf

    source = resolve(name)
    target = ponder_home() / "reference" / f"{name}-f32.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(str(target) + ".partial", arch=reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    Path(str(target) + ".partial").rename(target)
    return target
