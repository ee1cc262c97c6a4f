"""ponder's dequantization (gguf-py's) equals ggml's own, called from the library llama-cpp-python ships."""

from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import numpy as np
import pytest

from ponder.models.gguf import dequantize, open_gguf
from ponder.models.registry import model_dir, resolve
from reference import REAL_MODELS


class _TypeTraits(ctypes.Structure):  # ggml.h: struct ggml_type_traits
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p), ("from_float_ref", ctypes.c_void_p)]


_ToFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def ggml_dequantize(data: np.ndarray, qtype: gguf.GGMLQuantizationType, count: int) -> np.ndarray:
    llama_cpp = pytest.importorskip("llama_cpp")
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
    to_float = lib.ggml_get_type_traits(int(qtype)).contents.to_float
    if not to_float:  # F32 needs no conversion
        return np.asarray(data, dtype=np.float32).ravel()
    raw, out = np.ascontiguousarray(data), np.zeros(count, dtype=np.float32)
    _ToFloat(to_float)(raw.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), count)
    return out


@pytest.mark.parametrize("name", REAL_MODELS)
def test_every_quant_type_in_the_real_models_matches_ggml(name: str) -> None:
    if not model_dir(name).exists():
        pytest.skip(f"{name} is not pulled")
    path = resolve(name)
    first_of_each_type = {}
    for tensor in open_gguf(path).tensors:
        first_of_each_type.setdefault(tensor.tensor_type, tensor)
    assert len(first_of_each_type) >= 3  # e.g. F32, Q4_1, Q8_0 / F32, Q5_0, Q8_0, Q4_K, Q6_K
    for qtype, tensor in first_of_each_type.items():
        ours = dequantize(tensor, path).numpy().ravel()
        np.testing.assert_array_equal(ours, ggml_dequantize(tensor.data, qtype, ours.size), err_msg=qtype.name)


@pytest.mark.parametrize("qtype", [q for q in gguf.GGMLQuantizationType if q.name in (
    "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4")])
def test_quant_types_gguf_py_writes_match_ggml(qtype: gguf.GGMLQuantizationType) -> None:
    weights = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32)
    data = gguf.quants.quantize(weights, qtype)
    ours = gguf.quants.dequantize(data, qtype).astype(np.float32).ravel()
    np.testing.assert_array_equal(ours, ggml_dequantize(data, qtype, ours.size))
