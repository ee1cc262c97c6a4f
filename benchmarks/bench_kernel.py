"""ponder's int8 matrix kernel against PyTorch's fp32 `F.linear` on the same weights, side by side.

    .venv/bin/python benchmarks/bench_kernel.py [--model qwen2.5-coder-0.5b-instruct] [--rows 1,2,4,16,80]

For each of the model's matrix shapes (attention projections, MLP, the LM head) and each number of
rows (sequences decoded together), the time of one product and its GFLOP/s on both paths, and the
ratio. The fp32 product is the exact reference the engine's `native-fp32` path uses.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from ponder.engine import cpu_kernels
from ponder.engine.int8_linear import Int8Linear
from ponder.models.loader import load


def seconds(run, repeats: int) -> float:  # noqa: ANN001
    run()
    best = float("inf")
    for _ in range(3):  # the best of three batches of repeats: the machine is shared
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--rows", default="1,2,4,16,80")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not cpu_kernels.available():
        raise SystemExit("ponder's CPU kernels are not available here (no AVX2/FMA or no compiler)")
    torch.set_num_threads(args.threads)
    model = load(args.model).model
    layer = model.layers[0]
    shapes = {"q projection": layer.attn.q, "k projection": layer.attn.k, "MLP up": layer.mlp.up,
              "MLP down": layer.mlp.down, "LM head": model.head}
    table = Table(title=f"{args.model}: one matrix product, {args.threads} threads")
    for column in ("matrix (in x out)", "rows", "fp32 ms", "int8 ms", "fp32 GFLOP/s", "int8 GFLOP/s", "int8 / fp32"):
        table.add_column(column)
    with torch.inference_mode():
        for name, linear in shapes.items():
            fast = Int8Linear(linear)
            for rows in (int(r) for r in args.rows.split(",")):
                x = torch.randn(rows, linear.in_features)
                flops = 2 * rows * linear.in_features * linear.out_features
                repeats = max(2, min(200, int(2e9 / flops)))
                exact = seconds(lambda: torch.nn.functional.linear(x, linear.weight, linear.bias), repeats)
                quick = seconds(lambda: fast(x), repeats)
                table.add_row(f"{name} ({linear.in_features} x {linear.out_features})", str(rows),
                              f"{exact * 1e3:.2f}", f"{quick * 1e3:.2f}", f"{flops / exact / 1e9:.0f}",
                              f"{flops / quick / 1e9:.0f}", f"{exact / quick:.2f}x")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
