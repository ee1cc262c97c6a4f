"""What a learned verifier saves by riding along with generation instead of scoring in a separate pass.

    .venv/bin/python benchmarks/bench_value_head.py [--model qwen2.5-coder-0.5b-instruct] [--n 16]

The same n samples of one `gsm_symbolic` question (same seeds) three ways, each engine cold:
- no verifier: generation alone, the baseline;
- ride-along: the value head attached to the policy's engine scores every state as it is computed;
  reading a candidate's step scores afterwards costs nothing but the one extra position a stopped
  row runs for its last state;
- separate pass: the policy generates without the head, then a second engine of the same model
  (what scoring beside another backend needs: llama.cpp, vLLM, a remote server) computes each
  candidate's states from scratch (the prompt once, every generated token).
The head is untrained (random weights): its cost, not its judgement, is what is measured.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from ponder.budget import Budget
from ponder.engine.backends import open_generator
from ponder.prm.head import ValueHead
from ponder.prm.verifier import LearnedVerifier
from ponder.search.base import Sampling, Search
from ponder.tasks import load_tasks


def run(model: str, n: int, mode: str, max_tokens: int) -> dict[str, float]:
    policy = open_generator(model)
    torch.manual_seed(0)
    head = ValueHead(policy.model.cfg.dim)
    verifier = None
    if mode == "ride-along":
        verifier = LearnedVerifier(head, policy, ride_along=True)
    elif mode == "separate pass":
        verifier = LearnedVerifier(head, open_generator(model), ride_along=False)
    task = load_tasks("gsm_symbolic", 1, seed=2024)[0]
    search = Search(policy, task, Budget(), verifier)
    start = time.perf_counter()
    samples = search.sample(n, Sampling(max_tokens=max_tokens).whole())
    generated = time.perf_counter() - start
    computed = policy.usage.prompt_tokens_computed
    start = time.perf_counter()
    if verifier is not None:
        search.score(samples)
    scoring = time.perf_counter() - start
    return {"generated tokens": sum(len(s.tokens) for s in samples), "generation s": generated,
            "scoring s": scoring, "policy tokens computed": computed,
            "scoring tokens computed": verifier.separate_pass_tokens if verifier else 0,
            "total s": generated + scoring}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = {mode: run(args.model, args.n, mode, args.max_tokens)
               for mode in ("no verifier", "ride-along", "separate pass")}
    table = Table(title=f"{args.n} samples of one gsm_symbolic question, {args.model}, scored by a value head")
    table.add_column("")
    for mode in results:
        table.add_column(mode)
    for key in results["no verifier"]:
        table.add_row(key, *(f"{r[key]:,.1f}" if isinstance(r[key], float) else f"{r[key]:,}"
                             for r in results.values()))
    console = Console()
    console.print(table)
    base = results["no verifier"]["total s"]
    for mode in ("ride-along", "separate pass"):
        console.print(f"{mode}: {results[mode]['total s'] / base:.2f}x the time of generation alone")


if __name__ == "__main__":
    main()
