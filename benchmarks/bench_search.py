"""Accuracy against budget for the search strategies, on gsm_symbolic with the default model.

    .venv/bin/python benchmarks/bench_search.py [--questions 100] [--verifier generative-outcome]

Per question: greedy decoding; one set of 16 samples, from which majority vote, best-of-N and
weighted best-of-N at n = 1, 4, 16 are all read (the first n samples; as the literature does), with
the oracle's pass@n beside them; and beam search at n = 4 and 16 against the same verifier. Every
question's results are appended to a JSONL file as soon as they exist: killed and started again, the
run continues where it stopped. The summary gives accuracy with a 95% bootstrap interval over
questions, FLOPs and wall seconds per question.

`--grid runs/search.db` also writes what is stored as an evaluation-grid store, the very one
`ponder eval` would make with the same settings (seed 0): `ponder report`, `ponder allocate` and the
replay of `auto` read it, and `ponder eval` with those settings would continue it.

`--head prm` (the head shipped for the model; `orm`, or `prm:PATH` for another) judges the same
samples with a trained head instead (from the policy's states stored with them; riding along with
generation, it costs no FLOPs of its own) for the summary and the grid: best-of-N and weighted
best-of-N are recomputed, and beam search, which ran against the other verifier, is left out.
Nothing is generated: this takes seconds (a minute or so more for samples restored from evidence/,
whose states are computed again).

`--no-beam` leaves beam search out: with the generative judge it is more than half of a question's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ponder.budget import Budget
from ponder.engine.backends import open_generator
from ponder.prm.features import encode_states, fill_missing_states, step_states
from ponder.prm.head import load_head
from ponder.prm.verifier import head_path
from ponder.search import Search, make_strategy
from ponder.search.base import Sampling, best, majority, weighted
from ponder.search.beam import BeamSearch
from ponder.stats import bootstrap_interval
from ponder.tasks import load_tasks
from ponder.verify import make_verifier
from ponder.verify.base import step_token_ends

SIZES = (1, 4, 16)


def run_question(generator, task, verifier_name: str, sampling: Sampling, beam: bool = True) -> dict:  # noqa: ANN001
    row: dict = {"id": task.id}
    verifier = make_verifier(verifier_name, generator)

    def search() -> Search:
        return Search(generator, task, Budget(), verifier)

    start = time.perf_counter()
    greedy = make_strategy("greedy", max_tokens=sampling.max_tokens).run(search())
    row["greedy"] = _entry(task, greedy.answer, greedy.spend.flops, time.perf_counter() - start)

    # One set of 16 samples, scored once, gives majority and best-of-N at every n <= 16.
    shared, start = search(), time.perf_counter()
    samples = shared.sample(16, sampling.whole())
    sample_flops, sample_seconds = shared.budget.spent.flops, time.perf_counter() - start
    candidates = shared.candidates(samples, shared.score(samples))  # in sampling order
    score_flops, score_seconds = shared.budget.spent.flops - sample_flops, time.perf_counter() - start - sample_seconds
    for n in SIZES:
        first, share = candidates[:n], n / 16  # the first n samples cost n / 16 of the whole
        sampled = (sample_flops * share, sample_seconds * share)
        scored = (sampled[0] + score_flops * share, sampled[1] + score_seconds * share)
        row[f"majority@{n}"] = _entry(task, majority(first), *sampled)
        row[f"bon@{n}"] = _entry(task, best(first), *scored)
        row[f"weighted_bon@{n}"] = _entry(task, weighted(first), *scored)
        oracle = any(task.check(c.answer) for c in first)
        row[f"pass@{n}"] = {"correct": oracle, "flops": sampled[0], "seconds": sampled[1]}
    # Kept for what comes later (rescoring the same samples with a learned verifier, the evaluation harness),
    # with the policy's states at step ends: still cached, they cost about a token a step now.
    row["prompt"] = list(shared.prompt)
    row["samples"] = [{"text": c.text, "tokens": list(s.tokens), "answer": c.answer, "step_scores": c.step_scores}
                      for c, s in zip(candidates, samples)]
    if hasattr(generator, "states"):
        for record, s in zip(row["samples"], samples):
            record["step_ends"] = step_token_ends(generator.decode, s.tokens)
            if record["step_ends"]:
                record["states"] = encode_states(step_states(generator, shared.prompt, s.tokens, record["step_ends"]))
    for n in (4, 16) if beam else ():
        start = time.perf_counter()
        found = BeamSearch(n=n, width=4, sampling=sampling).run(search())
        row[f"beam@{n}"] = _entry(task, found.answer, found.spend.flops, time.perf_counter() - start)
    return row


def judged_by_head(rows: list[dict], spec: str, model: str) -> list[dict]:
    """The rows as if the head had judged the samples: its step scores; best-of-N and weighted best-of-N
    re-chosen at the cost of the samples alone (the head rides along with generation); no beam cells."""
    from ponder.models.loader import load
    from ponder.prm.evaluate import head_candidate

    loaded = load(model)
    backbone = loaded.model
    fill_missing_states(rows, loaded, model)  # rows restored from a snapshot (evidence/) come without them
    head, _ = load_head(head_path(spec, model), backbone)
    tasks = {t.id: t for t in load_tasks("gsm_symbolic", len(rows), seed=2024)}
    judged = []
    for row in rows:
        task, candidates = tasks[row["id"]], [head_candidate(s, head, backbone.cfg.dim) for s in row["samples"]]
        out = {k: v for k, v in row.items() if not k.startswith("beam@")}
        out["samples"] = [s | {"step_scores": c.step_scores} for s, c in zip(row["samples"], candidates)]
        for n in SIZES:
            drawn = (row[f"majority@{n}"]["flops"], row[f"majority@{n}"]["seconds"])
            out[f"bon@{n}"] = _entry(task, best(candidates[:n]), *drawn)
            out[f"weighted_bon@{n}"] = _entry(task, weighted(candidates[:n]), *drawn)
        judged.append(out)
    return judged


def _entry(task, answer: str | None, flops: float, seconds: float) -> dict:  # noqa: ANN001
    return {"answer": answer, "correct": task.check(answer), "flops": flops, "seconds": seconds}


def summarize(rows: list[dict]) -> Table:
    table = Table(title=f"gsm_symbolic, {len(rows)} questions")
    # Median wall time: a question that ran beside something else, or while the run was paused, took
    # several times as long as its FLOPs say, and one such question moves a mean of 100 visibly.
    for column in ("strategy", "accuracy", "95% interval", "TFLOPs / question", "median s / question"):
        table.add_column(column)
    for key in rows[0]:
        if key in ("id", "samples", "prompt"):
            continue
        correct = [float(r[key]["correct"]) for r in rows]
        low, high = bootstrap_interval(correct)
        flops = [r[key].get("flops") for r in rows]
        seconds = [r[key].get("seconds") for r in rows]
        table.add_row(key, f"{sum(correct) / len(correct):.2f}", f"{low:.2f}-{high:.2f}",
                      "" if flops[0] is None else f"{sum(flops) / len(flops) / 1e12:.2f}",
                      "" if seconds[0] is None else f"{statistics.median(seconds):.0f}")
    return table


def write_grid(rows: list[dict], args: argparse.Namespace, path: Path) -> int:
    """The questions as `ponder eval` stores them: same settings, keys, cells and costs (the pooled cells'
    as the grid counts them: the prompt once, the first n samples' tokens, n/16 of the judging)."""
    from ponder.eval.grid import EvalJob, GridSettings
    from ponder.jobs import RunStore
    from ponder.models.loader import load

    strategies = ("greedy", "majority", "bon", "weighted_bon") + (("beam",) if "beam@4" in rows[0] else ())
    verifier = args.head or args.verifier
    grid = GridSettings(strategies, SIZES, verifier, args.temperature, Sampling().max_tokens, 4)
    settings = EvalJob(args.model, "native", "gsm_symbolic", args.questions, 2024, grid).settings(seeds=1)
    tasks = {t.id: t for t in load_tasks("gsm_symbolic", args.questions, seed=2024)}
    per_token = 2.0 * load(args.model).config.n_params
    with RunStore(path, settings) as store:
        stored = store.done()
        for row in rows:
            if f"{row['id']}#0" in stored:
                continue
            task, samples = tasks[row["id"]], row["samples"]
            lengths = [len(s["tokens"]) for s in samples]
            judging = row["bon@16"]["flops"] - row["majority@16"]["flops"]
            results = {"greedy@1": _cell(row["greedy"], per_token)}
            for n in SIZES:
                tokens = len(row["prompt"]) + sum(lengths[:n])
                seconds = row["majority@16"]["seconds"] * sum(lengths[:n]) / max(1, sum(lengths))
                drawn = {"tokens": tokens, "flops": per_token * tokens, "seconds": seconds}
                judged = {"tokens": tokens + judging / per_token * n / 16, "flops": drawn["flops"] + judging * n / 16,
                          "seconds": seconds + (row["bon@16"]["seconds"] - row["majority@16"]["seconds"]) * n / 16}
                for name in ("majority", "bon", "weighted_bon"):
                    entry = row[f"{name}@{n}"]
                    results[f"{name}@{n}"] = {"answer": entry["answer"], "correct": entry["correct"]} | (
                        drawn if name == "majority" else judged)
                results[f"pass@{n}"] = {"answer": None, "correct": row[f"pass@{n}"]["correct"]} | drawn
            for n in (4, 16) if "beam" in strategies else ():
                results[f"beam@{n}"] = _cell(row[f"beam@{n}"], per_token)
            pool = [{"text": s["text"], "answer": s["answer"], "correct": task.check(s["answer"]),
                     "step_scores": s["step_scores"], "tokens": len(s["tokens"])} for s in samples]
            store.put(f"{row['id']}#0", {"question": row["id"], "seed": 0, "difficulty": task.difficulty,
                                         "pool": pool, "results": results, "grid": grid.to_dict()})
        return len(store)


def _cell(entry: dict, per_token: float) -> dict:
    return {"answer": entry["answer"], "correct": entry["correct"], "tokens": entry["flops"] / per_token,
            "flops": entry["flops"], "seconds": entry["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--verifier", default="generative-outcome")
    parser.add_argument("--temperature", type=float, default=0.4)
    parser.add_argument("--out", type=Path, default=Path("runs/search.jsonl"))
    parser.add_argument("--summary", action="store_true", help="only print the summary of what is stored")
    parser.add_argument("--grid", type=Path, help="also write the stored questions as an evaluation-grid store")
    parser.add_argument("--no-beam", action="store_true",
                        help="leave beam search out (more than half of a question's time with a generative judge)")
    parser.add_argument("--head", help="judge the stored samples with a trained head instead: prm, orm, prm:PATH")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    console = Console()
    if not args.summary:
        tasks = load_tasks("gsm_symbolic", args.questions, seed=2024)
        generator = open_generator(args.model)
        finished = {r["id"] for r in done}
        for k, task in enumerate(tasks):
            if task.id in finished:
                continue
            row = run_question(generator, task, args.verifier, Sampling(temperature=args.temperature), not args.no_beam)
            with args.out.open("a") as f:  # one whole line per question: a kill loses at most the current one
                f.write(json.dumps(row) + "\n")
            done.append(row)
            console.print(f"{k + 1}/{len(tasks)} {task.id}: " + " ".join(
                f"{key}={int(v['correct'])}" for key, v in row.items() if isinstance(v, dict)))
    if args.head and done:
        done = judged_by_head(done, args.head, args.model)
    if done:
        console.print(summarize(done))
    if args.grid and done:
        console.print(f"{write_grid(done, args, args.grid)} questions in {args.grid}")


if __name__ == "__main__":
    main()
