"""An 8B-class model within these machines' memory: Llama 3 8B's shape at 4 bits, random weights.

Writes the 5.2 GB file (benchmarks/big_model.py, ~1 minute) and decodes a few tokens on the file's blocks as
they are. What it checks is memory: the weights stay in the mapped file (shared with the page cache, as
llama.cpp keeps them), so the process's own memory is the KV cache and the runtime, not 5 or 30 GB of copies.
Speed is the benchmark's to report (`benchmarks/big_model.py`), never a test's.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ponder.engine import cpu_kernels
from ponder.models.registry import model_dir

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from big_model import run_native, write_random_llama

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no AVX2/FMA/F16C or no compiler")


def test_llama3_8b_shape_at_4_bits_runs_from_the_mapped_file(tmp_path: Path) -> None:
    if not model_dir("smollm2-135m-instruct").exists():
        pytest.skip("smollm2-135m-instruct (the tokenizer) is not pulled")
    if shutil.disk_usage(tmp_path).free < 12e9:
        pytest.skip("needs 12 GB of free disk for the 5.2 GB file")
    path = write_random_llama(tmp_path / "llama3-8b-shaped.gguf")
    assert path.stat().st_size > 4.5e9
    got = run_native(path, threads=2, tokens=2, prompt=4, batches=(1,))
    assert got["n=1 tokens/s"] > 0
    assert got["anonymous RSS GB"] < 2.0, got  # the 5.2 GB of weights are not copied into the process
    assert got["peak RSS GB"] < 24, got
