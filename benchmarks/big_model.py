"""An 8B-class model on these machines: a Llama 3 8B-shaped GGUF with random 4-bit weights, loaded and run.

    .venv/bin/python benchmarks/big_model.py [--threads 2] [--tokens 16] [--keep] [--isa native-noamx]

No 8B weights install offline here, so this writes a file of Llama 3 8B's exact shape (32 layers, width 4096,
32 heads, 8 kv heads, feed-forward 14336, vocabulary 128,256) in Q4_K_M's mix of types (Q4_K, with Q6_K for
attn_v, ffn_down and the output), with random blocks and SmolLM2's tokenizer padded to the vocabulary. Then,
in one run: ponder's engine on the file's blocks as they are (load seconds, peak memory, decode tokens/s at
n = 1 and 4) and llama.cpp's own llama-batched-bench on the same file. Random weights: no accuracy claim.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from ponder.models.gguf import open_gguf
from ponder.models.registry import ponder_home, resolve

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class Shape:
    layers: int = 32
    dim: int = 4096
    heads: int = 32
    kv_heads: int = 8
    ffn: int = 14336
    vocab: int = 128256


LLAMA3_8B = Shape()


def random_blocks(qtype: Q, rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Random quantized rows [rows, bytes] with small, finite fp16 scales (the residual stream stays finite)."""
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, width // block, block_bytes), dtype=np.uint8)
    scales = {Q.Q4_K: [(0, 0.002), (2, 0.001)], Q.Q6_K: [(208, 0.0005)], Q.Q8_0: [(0, 0.002)]}[qtype]
    for at, size in scales:
        raw[:, :, at: at + 2] = np.full((rows, width // block, 1), size, np.float16).view(np.uint8)
    return raw.reshape(rows, -1)


def write_random_llama(path: Path, shape: Shape = LLAMA3_8B, seed: int = 0) -> Path:
    """A Llama GGUF of `shape` with random Q4_K_M-style blocks, written tensor by tensor (memory stays small)."""
    if path.exists():
        return path
    tokenizer = open_gguf(resolve("smollm2-135m-instruct")).metadata
    pad = shape.vocab - len(tokenizer["tokenizer.ggml.tokens"])
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(partial), arch="llama")
    writer.add_block_count(shape.layers)
    writer.add_context_length(8192)
    writer.add_embedding_length(shape.dim)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(shape.vocab)
    writer.add_rope_dimension_count(shape.dim // shape.heads)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list([*tokenizer["tokenizer.ggml.tokens"], *(f"<|unused_{i}|>" for i in range(pad))])
    writer.add_token_types([*tokenizer["tokenizer.ggml.token_type"], *([1] * pad)])
    writer.add_token_merges(tokenizer["tokenizer.ggml.merges"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(tokenizer["tokenizer.chat_template"])

    head_dim, kv = shape.dim // shape.heads, shape.dim // shape.heads * shape.kv_heads
    layer = [("attn_q", Q.Q4_K, shape.dim, shape.dim), ("attn_k", Q.Q4_K, kv, shape.dim),
             ("attn_v", Q.Q6_K, kv, shape.dim), ("attn_output", Q.Q4_K, shape.dim, shape.dim),
             ("ffn_gate", Q.Q4_K, shape.ffn, shape.dim), ("ffn_up", Q.Q4_K, shape.ffn, shape.dim),
             ("ffn_down", Q.Q6_K, shape.dim, shape.ffn)]
    assert head_dim * shape.heads == shape.dim
    rng = np.random.default_rng(seed)
    tensors: list[tuple[str, Q, int, int]] = [("token_embd.weight", Q.Q4_K, shape.vocab, shape.dim)]
    for i in range(shape.layers):
        tensors += [(f"blk.{i}.attn_norm.weight", Q.F32, 1, shape.dim), (f"blk.{i}.ffn_norm.weight", Q.F32, 1, shape.dim)]
        tensors += [(f"blk.{i}.{name}.weight", qtype, rows, width) for name, qtype, rows, width in layer]
    tensors += [("output_norm.weight", Q.F32, 1, shape.dim), ("output.weight", Q.Q6_K, shape.vocab, shape.dim)]
    cache: dict[tuple[Q, int, int], np.ndarray] = {}  # one random array per kind of tensor: the layers share it

    def data(qtype: Q, rows: int, width: int) -> np.ndarray:
        if (qtype, rows, width) not in cache:
            cache[qtype, rows, width] = (np.ones(width, np.float32) if qtype == Q.F32
                                         else random_blocks(qtype, rows, width, rng))
        return cache[qtype, rows, width]

    for name, qtype, rows, width in tensors:
        array = data(qtype, rows, width)
        # a quantized tensor's shape is given in bytes, as its array has it
        writer.add_tensor_info(name, array.shape, array.dtype, array.nbytes, raw_dtype=None if qtype == Q.F32 else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, qtype, rows, width in tensors:
        writer.write_tensor_data(data(qtype, rows, width))
    writer.close()
    os.replace(partial, path)
    return path


def run_native(path: Path, threads: int, tokens: int, prompt: int = 32, batches: tuple[int, ...] = (1, 4)
               ) -> dict[str, float]:
    """ponder's engine on the file's blocks, in a fresh process so that its peak memory is the model's alone:
    load seconds, the prompt's prefill tokens/s, then generated tokens/s per batch size (`n=N tokens/s`, the
    prompt's blocks reused, as llama-batched-bench -pps computes it once), peak RSS and the anonymous part of it
    (what is not the mapped file: no copy of the weights)."""
    script = f"""
import json, resource, time, torch
torch.set_num_threads({threads})
start = time.perf_counter()
from ponder.engine.gguf_linear import load_quantized
from ponder.engine.native import NativeEngine
from ponder.engine.sampling import SamplingParams
from pathlib import Path
loaded = load_quantized(Path({str(path)!r}))
engine = NativeEngine(loaded, cache_bytes=1 << 28, int8=True)
out = {{"load s": time.perf_counter() - start}}
engine.sample([[1, 2, 3, 4]], 1, SamplingParams(max_tokens=2))  # warm-up (the mapped pages), as llama.cpp does one
prompt = list(range(100, {100 + prompt}))
t = time.perf_counter()
engine.sample([prompt], 1, SamplingParams(max_tokens=1))  # the prompt once; its blocks are kept
out["prefill tokens/s"] = len(prompt) / (time.perf_counter() - t)
for n in {tuple(batches)!r}:
    t = time.perf_counter()
    got = engine.sample([prompt], n, SamplingParams(temperature=0.7, max_tokens={tokens}, seed=0))
    out[f"n={{n}} tokens/s"] = sum(len(s.tokens) for s in got[0]) / (time.perf_counter() - t)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
out["peak RSS GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
out["anonymous RSS GB"] = int(status["RssAnon"].split()[0]) / 1e6
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the 4.6 GB file for the next run")
    parser.add_argument("--isa", choices=("native", "native-noamx"), default="native",
                        help="llama.cpp's build: native-noamx where its AMX matmul crashes (benchmarks/llama_cpp_tools.py)")
    args = parser.parse_args()
    path = ponder_home() / "bench" / "llama3-8b-shaped-q4_k_m.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_random_llama(path)
    print(f"{path}: {path.stat().st_size / 1e9:.2f} GB, written in {time.perf_counter() - start:.0f} s")
    try:
        native = run_native(path, args.threads, args.tokens)
        print("ponder native-gguf:", json.dumps({k: round(v, 2) for k, v in native.items()}))
        sys.path.insert(0, str(Path(__file__).parent))
        from llama_cpp_tools import run_batched_bench

        llama = run_batched_bench(path, prompt=32, generate=args.tokens, batches=(1, 4), threads=args.threads,
                                  isa=args.isa)
        print("llama-batched-bench:", json.dumps(llama))
        for row in ("n=1 tokens/s", "n=4 tokens/s", "prefill tokens/s", "peak RSS GB"):
            print(f"{row}: ponder / llama.cpp = {native[row] / llama[row]:.2f}x")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
