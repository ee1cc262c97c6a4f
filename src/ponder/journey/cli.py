"""`ponder journey trees | build | show`: long-thought training data from ponder's own search trees."""

from __future__ import annotations

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
    hold_out_templates: Annotated[float, typer.Option(help="Grow no tree for the questions of this share of "
                                                           "templates (gsm_symbolic), to judge the trained model on "
                                                           "unseen ones: `ponder journey revisions --templates "
                                                           "unseen`.")] = 0.25,
    concurrent: Annotated[int, typer.Option(help="Questions at once, batched by one engine: the same trees, "
                                                 "sooner.")] = 1,
) -> None:
    """Run a tree strategy on training questions and store each tree, its finished leaves checked."""
    from ponder.engine.backends import check_concurrent
    from ponder.jobs import RunStore, run_all
    from ponder.journey.trees import TreeJob
    from ponder.search import STRATEGIES
    from ponder.specs import parse_spec

    if parse_spec(strategy)[0] not in ("beam", "dvts", "lookahead") or parse_spec(strategy)[0] not in STRATEGIES:
        raise BadParameter(f"--strategy {strategy!r} grows no tree: use beam, dvts or lookahead")
    if not 0 <= hold_out_templates < 1:
        raise BadParameter(f"--hold-out-templates is a share from 0 to below 1, not {hold_out_templates}")
    check_concurrent(concurrent, backend)
    job = TreeJob(model, backend, task, size, seed, strategy, n, verifier, temperature, max_tokens,
                  hold_out_templates, concurrent)
    keys = job.keys()
    with RunStore(out_path, job.settings()) as store:
        ran = run_all(keys, job, store, progress="searching", threads=concurrent)
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
    reflections: Annotated[str, typer.Option(help="Who writes the reflections: templates (three, naming the wrong "
                                                   "answer) or policy (its own critique of the wrong turn, told "
                                                   "only that the answer is wrong).")] = "templates",
    model: Annotated[str | None, typer.Option(help="The policy that writes reflections (default: the trees' "
                                                   "own).")] = None,
) -> None:
    """Shortcut and journey SFT sets from stored trees (`ponder train sft` takes either)."""
    from ponder.jobs import RunStore, write_jsonl
    from ponder.journey.build import build as build_sets
    from ponder.tasks import training_tasks

    if wrong < 1:
        raise BadParameter("--wrong must be at least 1")
    if reflections not in ("templates", "policy"):
        raise BadParameter(f"--reflections is templates or policy, not {reflections!r}")
    runs = RunStore.existing(store)
    settings = runs.settings
    if "strategy" not in settings:
        raise BadParameter(f"{store} holds no search trees: make them with `ponder journey trees`")
    tasks = {t.id: t for t in training_tasks(settings["tasks"], settings["size"], settings["seed"],
                                                     settings.get("hold_out_templates", 0.0))}
    built = build_sets([r for _, r in runs.items()], tasks, branch, wrong, seed)
    for reason, questions in built.skipped.items():
        out.print(f"{len(questions)} questions with {reason}: {', '.join(questions[:8])}"
                  f"{', ...' if len(questions) > 8 else ''}")
    if reflections == "policy" and built.journeys:
        from ponder.engine.backends import open_generator
        from ponder.journey.reflect import policy_reflections

        kept = policy_reflections(built.journeys, open_generator(model or settings["model"], settings["backend"]))
        if kept:
            out.print(f"{kept} critiques with no whole first sentence: those reflections stay templates")
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
        mark = "[reflection, the policy's] " if segment.get("by") == "policy" else marks[segment["kind"]]
        out.print(Text(mark + segment["text"].rstrip("\n"), style=styles[segment["kind"]]))


@app.command()
def revisions(
    stores: Annotated[list[Path], typer.Argument(help="Evaluation stores (`ponder eval`) of the models compared.")],
    cell: Annotated[str, typer.Option(help="Which answers: a strategy@budget cell of the stores.")] = "greedy@1",
    templates: Annotated[str | None, typer.Option(help="Only the questions of templates seen in training, or "
                                                       "unseen (the share of `journey trees "
                                                       "--hold-out-templates`).")] = None,
    hold_out_templates: Annotated[float, typer.Option(help="The share of templates held out of "
                                                           "training.")] = 0.25,
    out_path: Annotated[Path | None, typer.Option("--out", help="Also write the table here (markdown).")] = None,
    figure_path: Annotated[Path | None, typer.Option("--figure", help="Accuracy against tokens per answer "
                                                                      "(PNG).")] = None,
) -> None:
    """Accuracy, tokens per answer, and how often answers revise themselves ("Wait, ...") and to what effect:
    a wrong answer turned right, a right one turned wrong."""
    from ponder.jobs import RunStore, write_whole
    from ponder.journey.revisions import figure, markdown_table, summarize
    from ponder.tasks import load_tasks
    from ponder.tasks.templates import rows_of_templates

    summaries = []
    for path in stores:
        store = RunStore.existing(path)
        settings, rows = store.settings, [r for _, r in store.items()]
        if "task_seed" not in settings or not rows:
            raise BadParameter(f"{path} holds no evaluation results: make them with `ponder eval`")
        tasks = load_tasks(settings["tasks"], settings["size"], settings["task_seed"])
        if templates:
            rows = rows_of_templates(rows, tasks, templates, hold_out_templates)
            if not rows:
                raise BadParameter(f"{path} holds no question of {templates} templates")
        if not any(cell in r["results"] for r in rows):
            raise BadParameter(f"{path} has no {cell} answers: give --cell as the store has them "
                               f"({', '.join(sorted(rows[0]['results']))})")
        summaries.append(summarize(path.stem, rows, {t.id: t for t in tasks}, cell))
    table = markdown_table(summaries)
    out.print(table)
    if out_path:
        write_whole(out_path, table + "\n")
    if figure_path:
        title = "accuracy against tokens per answer" + (f" ({templates} templates)" if templates else "")
        write_whole(figure_path, figure(summaries, title))
