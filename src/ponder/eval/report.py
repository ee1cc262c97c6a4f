"""`ponder report`: a self-contained HTML page (figures inline) and a markdown table for the README.

Figures: accuracy against FLOPs per question (log scale) for each strategy, with the compute-optimal
frontier; the same per difficulty bin; runs given with --compare (a larger model, say) drawn dashed
on the same axes and binned by the main run's question difficulty. With `auto` cells (replayed by
`ponder report --policy`) the table adds auto against best-of-N, and with a compared run the equal-FLOPs
comparison (see `compare`).
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import PonderError
from ponder.eval.compare import auto_against_best_of_n, equal_flops_table, pretraining_table
from ponder.eval.metrics import Cell, frontier, oracle_difficulty, quantile_bins, summarize


@dataclass
class Run:
    label: str
    rows: list[dict[str, Any]]
    settings: dict[str, Any]


def build_report(main: Run, compared: list[Run], bins: int = 5) -> tuple[str, str]:
    """(HTML page, markdown table)."""
    page, table, _ = _build(main, compared, bins)
    return page, table


def _build(main: Run, compared: list[Run], bins: int) -> tuple[str, str, dict[str, bytes]]:
    """The page, the table and the figures (PNG by file name)."""
    difficulty = quantile_bins(oracle_difficulty(main.rows), bins)
    cells = {run.label: summarize(run.rows, difficulty) for run in [main, *compared]}
    figures = {"all.png": _figure(cells, None, "all questions")}
    names = {1: " (easiest)", bins: " (hardest)"}
    figures |= {f"bin-{b}.png": _figure(cells, b, f"difficulty bin {b} of {bins}{names.get(b, '')}")
                for b in range(1, bins + 1)}
    table = markdown_table(cells, bins)
    with_auto = any(c.strategy == "auto" for c in cells[main.label])  # replayed with --policy, or run live
    if with_auto:
        table += ("\n\nauto against best-of-N at its largest n (accuracy, difference, FLOPs as a share of "
                  "best-of-N's):\n\n" + auto_against_best_of_n(cells[main.label], bins))
    if compared and with_auto:
        for run in compared:
            small, large = cells[main.label], cells[run.label]
            table += (f"\n\nAt equal inference FLOPs per question (difficulty bins of {main.label}'s questions):\n\n"
                      + equal_flops_table(small, large, main.label, run.label, bins)
                      + "\n\nCounting pretraining too (R = inference tokens / pretraining tokens; k = how many times "
                      f"{run.label}'s inference tokens {main.label} may spend at equal total FLOPs):\n\n"
                      + pretraining_table(small, large, main.label, run.label, bins))
    title = f"ponder: {html.escape(main.label)} on {html.escape(str(main.settings.get('tasks', '')))}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
            "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>"
            f"<h1>{title}</h1><p>{len({r['question'] for r in main.rows})} questions, "
            f"{len(main.rows)} question-seed items. Settings: <code>{html.escape(str(main.settings))}</code></p>"
            + "".join(f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                      for png in figures.values())
            + f"<h2>Table</h2><pre>{html.escape(table)}</pre></body></html>")
    return page, table, figures


def markdown_table(cells: dict[str, list[Cell]], bins: int) -> str:
    head = "| run | strategy | n | accuracy (95% CI) | TFLOPs / q | tokens / q | s / q | " + " | ".join(
        f"bin {b}" for b in range(1, bins + 1)) + " |"
    lines = [head, "|" + "---|" * (7 + bins)]
    for label, run_cells in cells.items():
        by_bin = {(c.key, c.difficulty_bin): c for c in run_cells}
        for c in (c for c in run_cells if c.difficulty_bin is None):
            binned = [by_bin.get((c.key, b)) for b in range(1, bins + 1)]
            lines.append(f"| {label} | {c.strategy} | {c.n} | {c.accuracy:.2f} ({c.low:.2f}-{c.high:.2f}) | "
                         f"{c.flops / 1e12:.2f} | {c.tokens:,.0f} | {c.seconds:.1f} | "
                         + " | ".join("" if x is None else f"{x.accuracy:.2f}" for x in binned) + " |")
    return "\n".join(lines)


def _figure(cells: dict[str, list[Cell]], difficulty_bin: int | None, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # a colour per line even with several runs compared
    for k, (label, run_cells) in enumerate(cells.items()):
        chosen = [c for c in run_cells if c.difficulty_bin == difficulty_bin and c.flops > 0]
        for strategy in sorted({c.strategy for c in chosen}):
            line = sorted((c for c in chosen if c.strategy == strategy), key=lambda c: c.flops)
            ax.errorbar([c.flops for c in line], [c.accuracy for c in line],
                        yerr=[[c.accuracy - c.low for c in line], [c.high - c.accuracy for c in line]],
                        marker="o", capsize=3, linestyle="-" if k == 0 else "--",
                        label=f"{label}: {strategy}" if len(cells) > 1 else strategy)
        if k == 0 and (best := frontier(chosen)):
            ax.plot([c.flops for c in best], [c.accuracy for c in best], color="grey", linewidth=6, alpha=0.3,
                    label="compute-optimal frontier")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per question")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: never over a point
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_report(main: Run, compared: list[Run], out: Path, bins: int = 5,
                 figures: Path | None = None) -> tuple[Path, Path]:
    """The page and the table (and with `figures`, each figure as a PNG in that folder, for a README),
    every file written whole (to a temporary name, then renamed)."""
    from ponder.jobs import write_whole

    page, table, pngs = _build(main, compared, bins)
    trees = tree_pages(main, out.with_name(out.stem + "-trees"))
    if trees:  # each question's search trees, a page each, linked from the report
        links = "".join(f"<li><a href='{html.escape(out.stem + '-trees/' + path.name)}'>{html.escape(label)}</a></li>"
                        for label, path, _ in trees)
        page = page.replace("</body>", f"<h2>Search trees, question by question</h2><ul>{links}</ul></body>")
    files: list[tuple[Path, str | bytes]] = [(out, page), (out.with_suffix(".md"), table + "\n")]
    files += [(path, content) for _, path, content in trees]
    files += [(figures / name, png) for name, png in pngs.items()] if figures else []
    for path, content in files:
        write_whole(path, content)
    return out, out.with_suffix(".md")


def tree_pages(run: Run, folder: Path) -> list[tuple[str, Path, str]]:
    """(label, path, page) for every stored search tree of the run (tree strategies store theirs)."""
    from ponder.serve.page import thinking_page

    questions: dict[str, str] = {}
    pages = []
    for row in run.rows:
        for cell, entry in sorted(row["results"].items()):
            if not entry.get("tree"):
                continue
            if not questions:
                questions = _question_texts(run.settings)
            label = f"{row['question']} (seed {row.get('seed', 0)}), {cell}: {'right' if entry['correct'] else 'wrong'}"
            name = re.sub(r"[^\w.-]+", "-", f"{row['question']}-{row.get('seed', 0)}-{cell}") + ".html"
            result = {"strategy": cell, "answer": entry.get("answer"), "tree": entry["tree"], "candidates": [],
                      "spend": {"flops": entry.get("flops", 0)}, "question": questions.get(row["question"], ""),
                      "correct": entry["correct"]}
            pages.append((label, folder / name, thinking_page(result, f"ponder: {label}")))
    return pages


def _question_texts(settings: dict[str, Any]) -> dict[str, str]:
    from ponder.tasks import load_tasks

    try:
        tasks = load_tasks(settings["tasks"], settings["size"], settings["task_seed"])
    except (KeyError, PonderError):
        return {}
    return {t.id: next((m["content"] for m in reversed(t.messages) if m["role"] == "user"), "") for t in tasks}
