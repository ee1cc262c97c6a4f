"""The native engine against llama.cpp (through ponder's llama.cpp backend), side by side in one run.

    .venv/bin/python benchmarks/bench_engine.py [--model qwen2.5-coder-0.5b-instruct] [--threads 2] [--fp32]

Workloads: n = 16 samples of one 120-token prompt (128 new tokens each); n = 1; a beam-search-shaped
job (16 beams, 8 steps of about 40 tokens; keep 4, fork each into 4). Prints tokens/s, the ratio,
prompt tokens computed vs reused, peak memory and KV cache bytes against the theoretical size.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ponder.engine import cpu_kernels
from ponder.engine.llamacpp import LlamaCppEngine
from ponder.engine.native import NativeEngine
from ponder.engine.protocol import Generator, Sequence
from ponder.engine.sampling import SamplingParams
from ponder.models.loader import load
from ponder.models.registry import resolve

PASSAGE = (Path(__file__).parents[1] / "tests" / "data" / "passage.txt").read_text()


def sampling(generator: Generator, prompt: list[int], n: int, new_tokens: int) -> dict[str, float]:
    before = generator.usage.snapshot()
    start = time.perf_counter()
    out = generator.sample([prompt], n, SamplingParams(temperature=0.7, max_tokens=new_tokens, seed=0))
    seconds = time.perf_counter() - start
    spent = generator.usage - before
    generated = sum(len(s.tokens) for s in out[0])
    return {"tokens/s": generated / seconds, "generated": generated, "seconds": seconds,
            "prompt computed": spent.prompt_tokens_computed, "prompt reused": spent.prompt_tokens_cached}


def beam_shaped(generator: Generator, prompt: list[int], beams: int = 16, steps: int = 8, keep: int = 4,
                step_tokens: int = 40) -> float:
    """Extend every beam by one step, keep the `keep` with the best mean logprob, fork each 4 ways."""
    params = SamplingParams(temperature=0.7, max_tokens=step_tokens, seed=1, stop=("\n\n",))
    frontier = Sequence(tuple(prompt)).fork(beams)
    start = time.perf_counter()
    for _ in range(steps):
        grown = generator.extend(frontier, params)
        best = sorted(grown, key=lambda s: -sum(s.logprobs) / max(1, len(s.logprobs)))[:keep]
        frontier = [child for s in best for child in s.fork(beams // keep)]
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--fp32", action="store_true", help="the exact fp32 path instead of the int8 fast path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load(args.model)
    prompt = loaded.tokenizer.encode(PASSAGE)[:120]

    native = NativeEngine(loaded, int8=not args.fp32)
    results = {"native": {"n=16": sampling(native, prompt, 16, args.new_tokens)}}
    native_peak_blocks = native.blocks.peak_held  # the n = 16 job alone
    results["native"] |= {"n=1": sampling(native, prompt, 1, args.new_tokens), "beam": beam_shaped(native, prompt)}
    native_rss = peak_rss_mb()
    llama = LlamaCppEngine(resolve(args.model), n_ctx=8192, n_threads=args.threads)
    results["llama.cpp"] = {"n=16": sampling(llama, prompt, 16, args.new_tokens),
                            "n=1": sampling(llama, prompt, 1, args.new_tokens), "beam": beam_shaped(llama, prompt)}

    path = "fp32" if args.fp32 else ("int8" if cpu_kernels.available() else "fp32 (no int8 kernel here)")
    table = Table(args.model, f"native {path}", "llama.cpp", "native / llama.cpp", title=f"{args.threads} threads")
    for job in ("n=16", "n=1"):
        ours, ref = results["native"][job], results["llama.cpp"][job]
        table.add_row(f"{job}: generated tokens/s", f"{ours['tokens/s']:.1f}", f"{ref['tokens/s']:.1f}",
                      f"{ours['tokens/s'] / ref['tokens/s']:.2f}")
        table.add_row(f"{job}: prompt tokens computed / reused", f"{ours['prompt computed']} / {ours['prompt reused']}",
                      f"{ref['prompt computed']} / {ref['prompt reused']}", "")
    ours, ref = results["native"]["beam"], results["llama.cpp"]["beam"]
    table.add_row("beam-shaped (16 beams x 8 steps), s", f"{ours:.1f}", f"{ref:.1f}", f"{ref / ours:.2f} (speed)")
    Console().print(table)

    cfg = loaded.config
    per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 4  # fp32 keys and values
    theoretical = (len(prompt) + 16 * args.new_tokens) * per_token
    used = native_peak_blocks * native.blocks.block_size * per_token
    print(f"native KV cache at its peak: {used / 2**20:.1f} MiB held vs {theoretical / 2**20:.1f} MiB theoretical for "
          f"n=16 ({used / theoretical:.2f}x); pool allocated "
          f"{native.kv.nbytes / 2**20:.0f} MiB")
    print(f"peak RSS: {native_rss:.0f} MiB after the native runs, {peak_rss_mb():.0f} MiB after llama.cpp's")


if __name__ == "__main__":
    main()
