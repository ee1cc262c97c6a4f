"""ponder's runtime against llama.cpp, side by side in one run: load, prefill and decode speed.

    .venv/bin/python benchmarks/bench_runtime.py [MODEL ...] [--threads 2] [--prompt-tokens 256] [--decode-tokens 64]

Cold load dequantizes the GGUF into an empty cache (a temporary PONDER_HOME that links the pulled
model); warm load reads that cache. Single sequence, greedy, fp32 ponder weights.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ponder.engine.sampling import SamplingParams
from ponder.engine.stream import generate_tokens
from ponder.models.kv_cache import DenseKVCache
from ponder.models.loader import load
from ponder.models.registry import model_dir, resolve

PASSAGE = (Path(__file__).parents[1] / "tests" / "data" / "passage.txt").read_text()


def timed(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_ponder(name: str, prompt_tokens: int, decode_tokens: int) -> tuple[dict[str, float], list[int]]:
    real_home = os.environ.get("PONDER_HOME")
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "models").mkdir()
        (Path(home) / "models" / name).symlink_to(model_dir(name))
        os.environ["PONDER_HOME"] = home
        try:
            _, cold = timed(lambda: load(name))
            loaded, warm = timed(lambda: load(name))
        finally:
            os.environ.pop("PONDER_HOME")
            if real_home is not None:
                os.environ["PONDER_HOME"] = real_home
    ids = loaded.tokenizer.encode(PASSAGE)[:prompt_tokens]
    model = loaded.model
    with torch.inference_mode():
        cache = DenseKVCache(model.cfg, 1, len(ids))
        _, prefill = timed(lambda: model(torch.tensor([ids]), torch.arange(len(ids))[None], cache))
    prompt = ids[:16]
    params = SamplingParams(max_tokens=decode_tokens)
    list(generate_tokens(model, prompt, SamplingParams(max_tokens=4)))  # warm-up
    _, decode = timed(lambda: list(generate_tokens(model, prompt, params)))
    return {"cold load, s": cold, "warm load, s": warm, "prefill, tokens/s": len(ids) / prefill,
            "decode, tokens/s": decode_tokens / decode}, ids


def bench_llama_cpp(name: str, ids: list[int], decode_tokens: int, threads: int) -> dict[str, float]:
    import llama_cpp

    llm, load_s = timed(lambda: llama_cpp.Llama(str(resolve(name)), n_ctx=1024, n_batch=512, n_threads=threads,
                                                verbose=False))
    llm.reset()
    _, prefill = timed(lambda: llm.eval(ids))
    llm.reset()
    llm.eval(ids[:16])

    def decode() -> None:
        for _ in range(decode_tokens):
            llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])

    _, decode_s = timed(decode)
    return {"cold load, s": load_s, "warm load, s": load_s, "prefill, tokens/s": len(ids) / prefill,
            "decode, tokens/s": decode_tokens / decode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--decode-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    for name in args.models:
        ours, ids = bench_ponder(name, args.prompt_tokens, args.decode_tokens)
        ref = bench_llama_cpp(name, ids, args.decode_tokens, args.threads)
        table = Table(f"{name}", "ponder", "llama.cpp", "ponder / llama.cpp", title=f"{args.threads} threads")
        for metric in ours:
            table.add_row(metric, f"{ours[metric]:.2f}", f"{ref[metric]:.2f}", f"{ours[metric] / ref[metric]:.2f}")
        console.print(table)


if __name__ == "__main__":
    main()
