"""`ponder journey trees | build | show`: long-thought training data from ponder's own search trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ponder.errors import BadParameter

app = typer.Typer(no_args_is_help=True, help="Journey learning: shortcuts and journeys from search trees.")
out = Console(highlight=False, soft_wrap=True)


@app.command()
def trees(
    task: Annotated[str, typer.Option(help="Training questions (evaluation questions are left out).")],
    out_path: Annotated[Path, typer.Option("--out", help="The store of trees (resumed if it exists).")],
    model: Annotated[str, typer.Option(help="The policy.")] = "qwen2.5-coder-0.5b-instruct",
    size: Annotated[int, typer.Option(help="Questions.")] = 100,
    seed: Annotated[int, typer.Option(help="Chooses the questions and seeds the sampling.")] = 7,
    strategy: Annotated[str, typer.Option(help="A tree strategy: beam, dvts, lookahead (with settings).")] = "beam",
    n: Annotated[int, typer.Option(help="Its budget.")] = 8,
    verifier: Annotated[str, typer.Option(help="What scores the steps.")] = "prm",
    temperature: Annotated[float, typer.Option()] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Per path.")] = 512,
    backend: Annotated[str, typer.Option()] = "native",
) -> None:
    """Run a tree strategy on training questions and store each tree, its finished leaves checked."""
    from ponder.jobs import RunStore, run_all
    from ponder.journey.trees import TreeJob
    from ponder.search import STRATEGIES
    from ponder.specs import parse_spec

    if parse_spec(strategy)[0] not in ("beam", "dvts", "lookahead") or parse_spec(strategy)[0] not in STRATEGIES:
        raise BadParameter(f"--strategy {strategy!r} grows no tree: use beam, dvts or lookahead")
    job = TreeJob(model, backend, task, size, seed, strategy, n, verifier, temperature, max_tokens)
    keys = job.keys()
    with RunStore(out_path, job.settings()) as store:
        ran = run_all(keys, job, store, progress="searching")
    out.print(f"{len(keys)} trees ({ran} now) in {out_path}: `ponder journey build {out_path} ...` makes the sets")


@app.command()
def build(
    store: Annotated[Path, typer.Argument(help="Trees from `ponder journey trees`.")],
    shortcut_path: Annotated[Path, typer.Option("--shortcut", help="SFT rows: the verified right path only.")],
    journey_path: Annotated[Path, typer.Option("--journey", help="SFT rows: wrong turns, reflections, the right "
                                                                 "path.")],
    branch: Annotated[str, typer.Option(help="Which wrong branches: highest (the best-scored wrong step), sibling (a "
                                             "wrong sibling of a right step), deepest (the dead end explored "
                                             "furthest).")] = "deepest",
    wrong: Annotated[int, typer.Option(help="Wrong branches a journey takes, at most.")] = 1,
    seed: Annotated[int, typer.Option(help="Draws reflections (and siblings).")] = 0,
) -> None:
    """Shortcut and journey SFT sets from stored trees (`ponder train sft` takes either)."""
    from ponder.jobs import RunStore, write_jsonl
    from ponder.journey.build import build as build_sets
    from ponder.journey.trees import training_tasks

    if wrong < 1:
        raise BadParameter("--wrong must be at least 1")
    runs = RunStore.existing(store)
    settings = runs.settings
    if "strategy" not in settings:
        raise BadParameter(f"{store} holds no search trees: make them with `ponder journey trees`")
    tasks = {t.id: t for t in training_tasks(settings["tasks"], settings["size"], settings["seed"])}
    built = build_sets([r for _, r in runs.items()], tasks, branch, wrong, seed)
    for reason, questions in built.skipped.items():
        out.print(f"{len(questions)} questions with {reason}: {', '.join(questions[:8])}"
                  f"{', ...' if len(questions) > 8 else ''}")
    write_jsonl(built.shortcuts, shortcut_path)
    write_jsonl(built.journeys, journey_path)
    out.print(f"{len(built.shortcuts)} shortcuts in {shortcut_path}, {len(built.journeys)} journeys in "
              f"{journey_path}; `ponder journey show {journey_path}` prints one")


@app.command()
def show(
    journeys: Annotated[Path, typer.Argument(help="Journey rows from `ponder journey build`.")],
    row: Annotated[int, typer.Option(help="Which row (from 1).")] = 1,
) -> None:
    """Print one journey with its wrong turns and reflections marked."""
    from ponder.jobs import read_jsonl

    rows = read_jsonl(journeys)
    if not 1 <= row <= len(rows):
        raise BadParameter(f"{journeys} has rows 1 to {len(rows)}, not {row}")
    number, record = rows[row - 1]
    if "segments" not in record:
        raise BadParameter(f"{journeys}, line {number}: not a journey (no segments): give a --journey file")
    question = next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user")
    out.print(Text(f"{record.get('question', '')}: {question}", style="bold"))
    styles = {"right": "", "wrong": "red", "reflection": "bold yellow"}
    marks = {"right": "", "wrong": "[wrong turn] ", "reflection": "[reflection] "}
    for segment in record["segments"]:
        out.print(Text(marks[segment["kind"]] + segment["text"].rstrip("\n"), style=styles[segment["kind"]]))
