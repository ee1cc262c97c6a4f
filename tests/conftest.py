"""Shared fixtures: tiny random-weight configs of each family, and the real models when pulled."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ponder.models.config import ModelConfig
from ponder.models.loader import LoadedModel, load

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 32}

# One tiny config per family; small original context so that the Llama 3 scaling bites.
TINY = {
    "llama3-scaled": ModelConfig(arch="llama", vocab_size=320, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                 ffn_dim=96, rope_theta=500000.0, rope_scaling=LLAMA3_SCALING, max_seq_len=256),
    "smollm2-tied": ModelConfig(arch="llama", vocab_size=320, dim=48, n_layers=3, n_heads=6, n_kv_heads=2,
                                ffn_dim=128, rope_theta=1e5, tie_embeddings=True, max_seq_len=256),
    "qwen2-bias": ModelConfig(arch="qwen2", vocab_size=320, dim=56, n_layers=2, n_heads=7, n_kv_heads=1,
                              ffn_dim=80, norm_eps=1e-6, rope_theta=1e6, qkv_bias=True, tie_embeddings=True,
                              max_seq_len=256),
}


@pytest.fixture(params=sorted(TINY))
def tiny_config(request: pytest.FixtureRequest) -> ModelConfig:
    return TINY[request.param]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny random Qwen2-family model loaded through a GGUF file, as the engine tests use."""
    from tiny_gguf import random_model, write_tiny_gguf

    folder = tmp_path_factory.mktemp("tiny")
    write_tiny_gguf(folder / "tiny.gguf", random_model(TINY["qwen2-bias"]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PONDER_HOME", str(folder / "home"))
        return load(folder / "tiny.gguf")


@pytest.fixture(autouse=True, scope="module")
def _release_models_after_each_module() -> Iterator[None]:
    """What a module's tests loaded (models, engines, llama.cpp instances, all held in functools caches) is dropped
    when the module ends, so the suite holds one module's models at a time: holding them all, it peaked at 20 GB."""
    yield
    tests = str(Path(__file__).parent)
    for name, module in list(sys.modules.items()):
        if name.startswith("ponder") or tests in (getattr(module, "__file__", None) or ""):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
    gc.collect()
    try:  # and glibc hands the freed heap back to the system (else RSS stays where it peaked)
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    """With PONDER_TEST_MEMLOG=FILE, each test's resident memory after it ran (this process and its largest child
    so far), to find what holds the suite's memory."""
    import os
    import resource

    if log := os.environ.get("PONDER_TEST_MEMLOG"):
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with open(log, "a") as f:
            f.write(f"{rss // 1024}\t{child // 1024}\t{nodeid}\n")
