"""Does an answer revise itself, and what did the revision do? The measure of journey learning's claim.

A journey-trained model should notice a wrong turn ("Wait, 18 does not look right. Let me go back ...") and repair
it. Reading each answer's text: it revises itself where a reflection begins (`REFLECTION`: the openings the
journey templates use and the usual ones of long-thought models). The answer it had reached before the first
reflection (the task's own extraction on the text before it: a stated answer, else the last number) is checked
against the final one, so a revision turns a wrong answer right, a right one wrong, leaves it wrong, or keeps it
right; one with no number before it is counted apart.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from ponder.stats import bootstrap_interval, mean
from ponder.tasks.base import Task

# Capitalised "Wait"/"Hmm" only ("the wait time" is not a reflection); the phrases in any case.
REFLECTION = re.compile(
    r"\b(?:Wait|Hmm)\b|(?i:\blet me (?:go back|double-check|re-?check|check (?:again|my work)|reconsider|look at "
    r"this again|redo)\b|\bI made a mistake\b)")
OUTCOMES = ("wrong -> right", "right -> wrong", "wrong -> wrong", "right -> right", "no answer before")


def revision(task: Task, text: str, correct: bool) -> str | None:
    """What the answer's first reflection did (one of `OUTCOMES`), None if the answer never reflects."""
    found = REFLECTION.search(text)
    if found is None:
        return None
    before = task.extract(text[:found.start()])
    if before is None:
        return "no answer before"
    was_right = task.check(before)
    return f"{'right' if was_right else 'wrong'} -> {'right' if correct else 'wrong'}"


@dataclass(frozen=True)
class Summary:
    label: str
    answers: int
    accuracy: float
    low: float
    high: float
    tokens: float  # per answer
    outcomes: dict[str, int]  # of the answers that revise themselves, by `OUTCOMES`
    words_before: float = float("nan")  # median words before the first reflection, of the answers that revise

    @property
    def revising(self) -> int:
        return sum(self.outcomes.values())


def summarize(label: str, rows: list[dict[str, Any]], tasks: dict[str, Task], cell: str = "greedy@1") -> Summary:
    """One run's answers in `cell` (one per stored item): accuracy with its 95% CI, tokens, revisions."""
    entries = [(tasks[row["question"]], row["results"][cell]) for row in rows if cell in row["results"]]
    if not entries:
        raise ValueError(f"{label} has no {cell} answers")
    outcomes, before = dict.fromkeys(OUTCOMES, 0), []
    for task, entry in entries:
        text = entry.get("text") or ""
        if (what := revision(task, text, bool(entry["correct"]))) is not None:
            outcomes[what] += 1
            # how much was tried before the doubt: a whole attempt, or a bare guess made to be doubted
            before.append(len(text[:REFLECTION.search(text).start()].split()))
    right = [float(entry["correct"]) for _, entry in entries]
    low, high = bootstrap_interval(right)
    return Summary(label, len(entries), mean(right), low, high, mean([float(e["tokens"]) for _, e in entries]),
                   outcomes, statistics.median(before) if before else float("nan"))


def markdown_table(summaries: list[Summary]) -> str:
    lines = ["| run | answers | accuracy [95% CI] | tokens / answer | revise themselves | "
             + " | ".join(OUTCOMES) + " | words before the first (median) |",
             "|" + "---|" * (6 + len(OUTCOMES))]
    for s in summaries:
        lines.append(f"| {s.label} | {s.answers} | {s.accuracy:.2f} [{s.low:.2f}, {s.high:.2f}] | {s.tokens:.0f} | "
                     f"{s.revising} ({s.revising / s.answers:.0%}) | "
                     + " | ".join(str(s.outcomes[o]) for o in OUTCOMES)
                     + (f" | {s.words_before:.0f} |" if s.revising else " | |"))
    return "\n".join(lines)


def figure(summaries: list[Summary], title: str) -> bytes:
    """Accuracy (95% CI) against tokens per answer, a point per run."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summaries:
        ax.errorbar([s.tokens], [s.accuracy], yerr=[[s.accuracy - s.low], [s.high - s.accuracy]], marker="o",
                    capsize=4, linestyle="none", label=s.label)
    ax.set_xlabel("tokens per answer")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
