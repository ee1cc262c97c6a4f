"""ponder serve under load, with llama.cpp's own OpenAI-compatible server beside it in the same run.

    .venv/bin/python benchmarks/bench_serve.py [--model smollm2-135m-instruct] [--clients 32] [--seconds 60]

Each client sends chat requests back to back (32 new tokens at temperature 0.7) for the duration.
Loads: every client plain; then half of them asking ponder for best-of-4 (scored by the arithmetic
verifier), which llama.cpp's server cannot do (there, the same clients ask for n = 4 instead).
Prints requests/s, generated tokens/s, p50 / p99 latency, errors and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

QUESTION = "A shop sells 3 pens for 2 dollars. How much do 12 pens cost?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"{command[0]} did not start")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, model: str, clients: int, seconds: float, harder: dict | None) -> dict[str, float]:
    latencies: list[float] = []
    tokens, errors = [0], [0]
    stop_at = time.monotonic() + seconds

    async def client(k: int) -> None:
        async with httpx.AsyncClient(timeout=300) as http:
            while time.monotonic() < stop_at:
                body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32,
                        "temperature": 0.7, "seed": k}
                if harder is not None and k % 2:
                    body |= harder
                start = time.monotonic()
                reply = await http.post(f"{url}/v1/chat/completions", json=body)
                if reply.status_code != 200:
                    errors[0] += 1
                    await asyncio.sleep(float(reply.headers.get("retry-after", "0.5")))
                    continue
                latencies.append(time.monotonic() - start)
                tokens[0] += reply.json()["usage"]["completion_tokens"]

    begun = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.monotonic() - begun
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {"requests/s": len(latencies) / elapsed, "tokens/s": tokens[0] / elapsed, "p50 s": pct(0.5),
            "p99 s": pct(0.99), "errors": errors[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    from ponder.models.registry import resolve

    bin_dir = Path(sys.executable).parent
    servers = {
        "ponder": (lambda port: [str(bin_dir / "ponder"), "serve", args.model, "--port", str(port),
                                 "--max-queue", str(4 * args.clients)],
                   {"ponder": {"strategy": "bon", "n": 4, "verifier": "arithmetic"}}),
        "llama.cpp": (lambda port: [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve(args.model)),
                                    "--model_alias", args.model, "--n_threads", "2", "--n_ctx", "4096",
                                    "--port", str(port)], {"n": 4}),
    }
    table = Table(title=f"{args.clients} clients for {args.seconds:.0f} s, {args.model}")
    for column in ("server", "load", "requests/s", "tokens/s", "p50 s", "p99 s", "errors", "peak RSS MiB"):
        table.add_column(column)
    results = {}
    for name, (command, harder) in servers.items():
        port = free_port()
        server = start(command(port), port)
        try:
            for label, extra in (("plain", None), ("half think harder", harder)):
                got = asyncio.run(load(f"http://127.0.0.1:{port}", args.model, args.clients, args.seconds, extra))
                results[(name, label)] = got
                table.add_row(name, label, *(f"{got[k]:.2f}" if k != "errors" else str(got[k])
                                             for k in ("requests/s", "tokens/s", "p50 s", "p99 s", "errors")),
                              f"{peak_rss_mib(server.pid):.0f}")
        finally:
            server.terminate()
            server.wait(30)
    Console().print(table)
    for label in ("plain", "half think harder"):
        ratio = results[("ponder", label)]["tokens/s"] / max(1e-9, results[("llama.cpp", label)]["tokens/s"])
        print(f"{label}: ponder / llama.cpp generated tokens/s = {ratio:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
