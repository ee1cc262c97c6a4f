"""The native engine against llama.cpp at its best (its own C++ llama-batched-bench), side by side in one run.

    .venv/bin/python benchmarks/bench_engine.py [--model qwen2.5-coder-0.5b-instruct] [--threads 2] \
        [--batches 1,4,16,64] [--new-tokens 128] [--repeats 3] [--isa avx2]

Same model file, same shapes: one shared 120-token prompt, then n sequences of `--new-tokens` each, for every
n. Each engine runs in a process of its own (its cold load and peak memory are its alone):
- native-gguf: ponder's engine on the GGUF file's quantized blocks as they are (the default path to be);
- native-int8: ponder's engine on its int8 copy of the dequantized weights (today's fast path);
- llama.cpp through ponder: llama-cpp-python under ponder's backend, which samples in Python between steps;
- llama-batched-bench: llama.cpp's own C++ tool (built once by benchmarks/llama_cpp_tools.py), the anchor.
Decode rates are generated tokens/s over all n sequences with the prompt already computed (ponder's engines
reuse its cached blocks, llama-batched-bench -pps computes it once); prefill is the prompt's tokens/s alone.
Prints every figure and each engine's ratio to llama-batched-bench. With `--repeats R` the anchor and the
engines take turns R times and each figure is the median of its R (the machines here drift by 15-25% between runs
minutes apart; taking turns spreads the drift over both sides). `--isa avx2` runs both sides on AVX2 alone (ponder's
AVX2 kernels, llama.cpp built without AVX-512): an AVX2-only machine's code on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from llama_cpp_tools import run_batched_bench

PASSAGE = (Path(__file__).parents[1] / "tests" / "data" / "passage.txt").read_text()
ENGINES = ("native-gguf", "native-int8", "llama.cpp via ponder")
PROMPT_TOKENS = 120


def open_engine(engine: str, model: str, threads: int, tokens: int):
    """The engine, with a KV cache sized to the run (as llama-batched-bench sizes its context)."""
    import torch

    from ponder.engine.backends import open_generator

    if engine == "llama.cpp via ponder":
        return open_generator(model, "llamacpp", threads=threads)
    from ponder.engine.gguf_linear import load_quantized
    from ponder.engine.native import NativeEngine
    from ponder.engine.paged_cache import KVPool
    from ponder.models.loader import load
    from ponder.models.registry import resolve

    gguf = engine == "native-gguf"
    loaded = load_quantized(resolve(model)) if gguf else load(model)
    cfg = loaded.config
    kv_dtype = torch.float16 if gguf else torch.float32  # as backends.open_generator opens each
    per_token = KVPool.bytes_per_block(cfg, 1, kv_dtype)
    return NativeEngine(loaded, cache_bytes=int(1.2 * tokens * per_token) + (64 << 20), int8=True, name=model,
                        kv_dtype=kv_dtype)


def measure(engine: str, model: str, threads: int, new_tokens: int, batches: list[int]) -> dict[str, float]:
    """One engine in this process: cold load, prefill, decode tokens/s per n, peak RSS."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    from ponder.engine.sampling import SamplingParams

    generator = open_engine(engine, model, threads, PROMPT_TOKENS + max(batches) * new_tokens)
    out = {"cold load s": time.perf_counter() - start}
    generator.sample([[1, 2, 3, 4]], 1, SamplingParams(max_tokens=2))  # warm-up, as llama.cpp's tools do one
    prompt = generator.tokenizer.encode(PASSAGE)[:PROMPT_TOKENS]
    start = time.perf_counter()
    generator.sample([prompt], 1, SamplingParams(max_tokens=1))  # the prompt, and its blocks kept
    out["prefill tokens/s"] = len(prompt) / (time.perf_counter() - start)
    for n in batches:
        params = SamplingParams(temperature=0.7, max_tokens=new_tokens, seed=0)
        start = time.perf_counter()
        got = generator.sample([prompt], n, params)
        out[f"n={n} tokens/s"] = sum(len(s.tokens) for s in got[0]) / (time.perf_counter() - start)
    out["peak RSS GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return out


def in_subprocess(engine: str, args: argparse.Namespace) -> dict[str, float]:
    env = os.environ | ({"PONDER_GGUF_ISA": "avx2"} if args.isa == "avx2" else {})
    done = subprocess.run([sys.executable, __file__, "--worker", engine, "--model", args.model, "--threads",
                           str(args.threads), "--new-tokens", str(args.new_tokens), "--batches", args.batches],
                          capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--engines", default=",".join(ENGINES), help="which of ponder's to run beside the anchor")
    parser.add_argument("--repeats", type=int, default=1, help="turns each side takes; figures are their medians")
    parser.add_argument("--isa", choices=("native", "native-noamx", "avx2"), default="native",
                        help="avx2: both sides on AVX2 alone (ponder's AVX2 kernels, llama.cpp built without AVX-512); "
                             "native-noamx: llama.cpp built for this CPU less AMX (its AMX matmul crashes on some)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(n) for n in args.batches.split(",")]
    if args.worker:
        print(json.dumps(measure(args.worker, args.model, args.threads, args.new_tokens, batches)))
        return

    from ponder.engine import cpu_kernels
    from ponder.models.registry import resolve

    path = resolve(args.model)
    engines = args.engines.split(",")
    turns: dict[str, list[dict[str, float]]] = {name: [] for name in ["llama-batched-bench", *engines]}
    for turn in range(args.repeats):
        anchor_run = run_batched_bench(path, PROMPT_TOKENS, args.new_tokens, tuple(batches), args.threads,
                                       isa=args.isa)
        turns["llama-batched-bench"].append(anchor_run | {"cold load s": float("nan")})  # the tool does not say
        for engine in engines:
            turns[engine].append(in_subprocess(engine, args))
        if args.repeats > 1:
            print(f"turn {turn + 1} of {args.repeats}: " + json.dumps({k: v[-1] for k, v in turns.items()}), flush=True)
    results = {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
               for name, runs in turns.items()}
    anchor = results["llama-batched-bench"]

    isa = "avx2" if args.isa == "avx2" else cpu_kernels.best_gguf_isa()
    medians = f", medians of {args.repeats} turns" if args.repeats > 1 else ""
    table = Table(f"{args.model}, {args.threads} threads, {isa} kernels (llama.cpp: {args.isa}){medians}",
                  *engines, "llama-batched-bench", *(f"{e} / anchor" for e in engines))
    rows = [*(f"n={n} tokens/s" for n in batches), "prefill tokens/s", "peak RSS GB", "cold load s"]
    for row in rows:
        ratio = [f"{results[e][row] / anchor[row]:.2f}x" if anchor.get(row) == anchor.get(row) else ""
                 for e in engines]
        table.add_row(row, *(f"{results[e][row]:.2f}" for e in engines), f"{anchor.get(row, float('nan')):.2f}",
                      *ratio)
    Console(width=200).print(table)
    print(f"decode: {args.new_tokens} new tokens a sequence after a shared {PROMPT_TOKENS}-token prompt, KV caches "
          "sized to the run; llama-batched-bench does not report its load time (it maps the file, well under a "
          "second) and its peak RSS includes its f16 KV cache")


if __name__ == "__main__":
    main()
