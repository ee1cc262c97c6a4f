"""`ponder eval` (run a grid, resumably, locally or on Ray) and `ponder report` (HTML and markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ponder.errors import BadParameter

if TYPE_CHECKING:
    from ponder.eval.report import Run

out = Console(highlight=False, soft_wrap=True)


def _numbers(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadParameter(f"{what} must be numbers separated by commas, like 1,4,16, not {text!r}") from None


def evaluate(
    task: Annotated[str, typer.Option(help="Task set (see load_tasks): gsm_symbolic, chain_sum:terms=3, a .jsonl.")],
    out_path: Annotated[Path, typer.Option("--out", help="The run's SQLite store (resumed if it exists).")],
    model: Annotated[str, typer.Option(help="The policy.")] = "qwen2.5-coder-0.5b-instruct",
    strategies: Annotated[str, typer.Option(help="Comma-separated: greedy, majority, bon, weighted_bon, beam, "
                                                 "lookahead, dvts, revisions, confidence, auto; variants of the tree "
                                                 "strategies, revisions and confidence with settings of their own: "
                                                 "beam:width=2, revisions:length=2, "
                                                 "confidence:keep=0.9.")] = "greedy,majority",
    budgets: Annotated[str, typer.Option(help="Budgets n (samples, beams), comma-separated.")] = "1,4,16",
    seeds: Annotated[int, typer.Option(help="Seeds per question.")] = 1,
    size: Annotated[int, typer.Option(help="Questions.")] = 100,
    task_seed: Annotated[int, typer.Option(help="Chooses the questions.")] = 2024,
    verifier: Annotated[str | None, typer.Option(help="For bon, weighted_bon and the tree strategies.")] = None,
    temperature: float = 0.4,
    max_tokens: int = 512,
    width: Annotated[int, typer.Option(help="Tree strategies: children per kept beam.")] = 4,
    backend: Annotated[str, typer.Option(help="native, native-gguf, native-fp32, llamacpp or vllm (a "
                                              "GPU).")] = "native",
    ray: Annotated[str | None, typer.Option(help="Fan items out on Ray: 'local' or a cluster address.")] = None,
    policy: Annotated[Path | None, typer.Option(help="auto: the allocation policy (default: the one shipped for "
                                                     "the model); each budget is auto's budget.")] = None,
    answer_format: Annotated[str, typer.Option("--format", help="cot (a chain of thought), program (a Python "
                                                                "program, run in the sandbox: its printed result "
                                                                "is the answer) or mixed (both in turn).")] = "cot",
    concurrent: Annotated[int, typer.Option(help="Items at once, their sequences batched by one engine: the same "
                                                 "answers, sooner (greedy answers gain most); each item's seconds "
                                                 "are then shared with the others.")] = 1,
) -> None:
    """Run a grid of strategies x budgets x seeds over a task set; every result in one SQLite store."""
    from ponder.engine.backends import check_concurrent
    from ponder.eval.grid import EvalJob, GridSettings
    from ponder.jobs import RunStore, run_all
    from ponder.specs import split_specs
    from ponder.verify import check_verifier_name

    if seeds < 1:
        raise BadParameter(f"seeds must be at least 1, not {seeds}")
    if verifier is not None:  # before the model loads (GridSettings takes scripted verifiers too, for tests)
        check_verifier_name(verifier)
    grid = GridSettings(split_specs(strategies),
                        _numbers(budgets, "budgets"), verifier, temperature, max_tokens, width,
                        str(policy.resolve()) if policy else None, answer_format)
    if "auto" in grid.strategies:  # a missing or unreadable policy is said before the model loads
        from ponder.search.auto import Policy, shipped_policy

        Policy.load(policy) if policy else shipped_policy(model)
    check_concurrent(concurrent, backend, ray)
    job = EvalJob(model, backend, task, size, task_seed, grid, concurrent)
    keys = job.keys(seeds)
    with RunStore(out_path, job.settings(seeds)) as store:
        ran = run_all(keys, job, store, ray_address=ray, progress="evaluating", threads=concurrent)
    out.print(f"{len(keys)} items ({ran} now) in {out_path}: `ponder report {out_path}` summarises them")


FORMATS_HELP = ("Runs of the same questions and seeds in other answer formats (`ponder eval --format`), joined in: "
                "their cells become choices such as majority:format=program@8.")


def _joined(run: Path, formats: list[Path]) -> list[dict]:
    """The run's items with the cells of runs in other answer formats (see `ponder.eval.allocate.with_formats`)."""
    from ponder.eval.allocate import with_formats
    from ponder.jobs import RunStore

    stores = [RunStore.existing(p) for p in [run, *formats]]
    return with_formats([r for _, r in stores[0].items()], stores[0].settings,
                        [(s.settings, [r for _, r in s.items()]) for s in stores[1:]])


def _of_templates(run: Run, which: str, share: float) -> list[dict]:
    from ponder.tasks import load_tasks
    from ponder.tasks.templates import rows_of_templates

    settings = run.settings
    tasks = load_tasks(settings["tasks"], settings["size"], settings["task_seed"])
    return rows_of_templates(run.rows, tasks, which, share)


def report(
    run: Annotated[Path, typer.Argument(help="A run store from `ponder eval`.")],
    compare: Annotated[list[Path] | None, typer.Option(help="Other runs to draw on the same axes.")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="The HTML page (RUN.html by default).")] = None,
    bins: Annotated[int, typer.Option(help="Difficulty bins.")] = 5,
    figures: Annotated[Path | None, typer.Option(help="Also write each figure as a PNG in this folder "
                                                      "(all.png, bin-1.png, ...), for a README.")] = None,
    policy: Annotated[list[Path] | None, typer.Option(
        help="Add auto@n, replayed exactly from the grid, each question by a policy not calibrated on it "
             "(give the policies of both folds to judge every question).")] = None,
    formats: Annotated[list[Path] | None, typer.Option("--formats", help=FORMATS_HELP)] = None,
    templates: Annotated[str | None, typer.Option(help="Only the questions of templates seen in training, or "
                                                       "unseen (see --hold-out-templates).")] = None,
    hold_out_templates: Annotated[float, typer.Option(help="The share of templates held out of training, as "
                                                           "`ponder train data` was given.")] = 0.25,
) -> None:
    """A self-contained HTML report with figures, and a markdown table beside it."""
    from ponder.eval.allocate import with_auto
    from ponder.eval.report import Run, write_report
    from ponder.jobs import RunStore
    from ponder.search.auto import Policy

    def load(path: Path) -> Run:
        store = RunStore.existing(path)
        rows = [r for _, r in store.items()]
        if not rows:
            raise BadParameter(f"{path} holds no results yet: let `ponder eval` run a while")
        return Run(str(store.settings.get("model", path.stem)), rows, store.settings)

    main = load(run)
    if templates:
        main.rows = _of_templates(main, templates, hold_out_templates)
    if formats:
        main = Run(main.label, _joined(run, formats), main.settings)
    if policy:
        policies = [Policy.load(p) for p in policy]
        if wrong := [p.model for p in policies if p.model != main.settings.get("model")]:
            raise BadParameter(f"the policy was made for {wrong[0]}, the run is of {main.settings.get('model')}")
        rows = with_auto(main.rows, policies)
        if not rows:
            raise BadParameter("every question of the run was used to calibrate the policies: nothing to judge "
                               "them on (calibrate with --folds/--hold-out, or on another run)")
        out.print(f"auto replayed on {len(rows)} of {len(main.rows)} items (the rest calibrated the policies)")
        main = Run(main.label, rows, main.settings)
    others = [load(p) for p in compare or []]
    for other in others if templates else []:
        other.rows = _of_templates(other, templates, hold_out_templates)
    if others:  # runs still under way, or of other sizes: compare them on the questions every one holds
        common = set.intersection(*({r["question"] for r in x.rows} for x in [main, *others]))
        if not common:
            raise BadParameter("the runs share no question: compare runs of the same task set")
        if any(len({r["question"] for r in x.rows}) > len(common) for x in [main, *others]):
            out.print(f"compared on the {len(common)} questions every run holds")
        for x in [main, *others]:
            x.rows = [r for r in x.rows if r["question"] in common]
    labels = [main.label]
    for other, path in zip(others, compare or []):
        if other.label in labels:  # the same model twice (another task, other settings): tell them apart
            other.label = f"{other.label} ({path.stem})"
        labels.append(other.label)
    page, table = write_report(main, others, out_path or run.with_suffix(".html"), bins, figures)
    out.print(table.read_text())
    out.print(f"report: {page}; table: {table}")


def allocate(
    run: Annotated[Path, typer.Argument(help="A calibration run from `ponder eval` (with a verifier).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where the policy goes (JSON).")],
    probe: Annotated[int, typer.Option(help="Probe samples that predict a question's difficulty.")] = 4,
    bins: Annotated[int, typer.Option(help="Difficulty bins.")] = 5,
    prior: Annotated[float, typer.Option(help="Shrink each bin's accuracies toward the run's, as if it had this "
                                              "many more questions (0: each bin's own).")] = 10.0,
    folds: Annotated[int, typer.Option(help="Split the run's questions into this many folds (by id).")] = 1,
    hold_out: Annotated[int | None, typer.Option(help="Calibrate on every fold but this one; `ponder report "
                                                      "--policy` then judges auto on it.")] = None,
    predictor: Annotated[str, typer.Option(help="How the probes predict difficulty: score (the verifier's mean "
                                                "final score) or agreement (how many give the commonest "
                                                "answer).")] = "score",
    formats: Annotated[list[Path] | None, typer.Option("--formats", help=FORMATS_HELP)] = None,
) -> None:
    """Make a compute-optimal policy from a calibration run: per difficulty bin and budget, the best strategy."""
    from ponder.eval.allocate import build_policy, fold_of
    from ponder.jobs import RunStore

    if hold_out is not None and not 0 <= hold_out < folds:
        raise BadParameter(f"--hold-out must be a fold number from 0 to {folds - 1} (with --folds {folds})")
    store = RunStore.existing(run)
    rows = _joined(run, formats) if formats else [r for _, r in store.items()]
    rows = [r for r in rows if hold_out is None or fold_of(r["question"], folds) != hold_out]
    if prior < 0:
        raise BadParameter(f"--prior must be 0 or more, not {prior}")
    settings = store.settings
    if formats and not settings.get("verifier"):  # another format's run may bring the verifier its cells need
        settings = settings | {"verifier": next((v for p in formats if (v := RunStore.existing(p).settings.get(
            "verifier"))), None)}
    policy = build_policy(rows, settings, probe, bins, prior, predictor)
    policy.save(out_path)
    for b, levels in sorted(policy.table.items()):
        out.print(f"bin {b}: " + ", ".join(f"n={n}: {c.strategy}@{c.n} ({c.accuracy:.2f})" for n, c in levels.items()))
    out.print(f"policy: {out_path}; use it with `ponder solve --strategy auto --policy {out_path}`")
