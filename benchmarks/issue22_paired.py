"""Issue 22's paired comparisons: per question, after training against before, with 95% bootstrap intervals of the
mean difference (the same questions on both sides, so question difficulty cancels out), on all 100 evaluation
questions and on the seen and unseen templates apart, and on the chain_sum ladder; DPO against the SFT model it
started from (what DPO itself added, and how many greedy answers it changed); and the two SFT models trained
from the same data, seed and settings on two machines (the EPYC's, which answered 69 questions, and this one's) set
against each other; and the revision model against prompted revisions at the same 8 attempts (two chains of 4),
and both against 8 parallel samples voted, per difficulty bin of the base model's own 16-sample pool.

    .venv/bin/python benchmarks/issue22_paired.py > evidence/gsm-sft-paired.txt
"""

from __future__ import annotations

import random
from pathlib import Path

from ponder.eval.metrics import oracle_difficulty, quantile_bins
from ponder.jobs import RunStore
from ponder.tasks import load_tasks
from ponder.tasks.templates import template_of, unseen

RUNS = Path("runs")


def cell(run: str, name: str, what: str = "correct") -> dict[str, float]:
    path = RUNS / f"{run}.db"
    if not path.exists():
        return {}
    return {r["question"]: r["results"][name][what] for _, r in RunStore.existing(path).items()
            if name in r["results"]}


def paired(before: dict[str, float], after: dict[str, float], questions: list[str],
           rounds: int = 4000) -> str:
    diffs = [float(after[q]) - float(before[q]) for q in questions]
    rng = random.Random(0)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(rounds))
    return f"{sum(diffs) / len(diffs):+.2f} [{means[int(0.025 * rounds)]:+.2f}, {means[int(0.975 * rounds)]:+.2f}]"


def revisions(split: dict[str, str], bins: int = 5) -> None:
    """Sequential against sequential (trained against prompted) and against parallel, question by question."""
    prompted, trained = cell("gsm-revise-prompted", "revisions@8"), cell("gsm-revise-trained", "revisions@8")
    if len(prompted) < 100 or len(trained) < 100:
        return
    difficulty = quantile_bins(oracle_difficulty([r for _, r in RunStore.existing(RUNS / "gsm-cot.db").items()]), bins)
    voted = cell("gsm-cot-at-8", "majority@8")
    tokens = cell("gsm-revise-prompted", "revisions@8", "tokens"), cell("gsm-revise-trained", "revisions@8", "tokens")
    print("revisions at 8 attempts (100 questions; bins from the base model's 16-sample pool, 1 easiest): accuracy "
          "prompted / trained / majority@8 of parallel samples; trained - prompted; trained - majority@8")
    for b in [None, *range(1, bins + 1)]:
        questions = sorted(q for q in prompted if b is None or difficulty[q] == b)
        share = [sum(c[q] for q in questions) / len(questions) for c in (prompted, trained, voted)]
        print(f"  {'all' if b is None else f'bin {b}'} ({len(questions)} questions): "
              + " / ".join(f"{a:.2f}" for a in share)
              + f"; {paired(prompted, trained, questions)}; {paired(voted, trained, questions)}")
    for which in ("seen", "unseen"):  # the revision model trained on none of these questions, nor on unseen templates
        questions = sorted(q for q in prompted if split[q] == which)
        print(f"  {which} templates ({len(questions)} questions): trained - prompted "
              f"{paired(prompted, trained, questions)}")
    print("  tokens a question, prompted / trained: "
          + " / ".join(f"{sum(t.values()) / len(t):,.0f}" for t in tokens))


def main() -> None:
    tasks = load_tasks("gsm_symbolic", 100, 2024)
    split = {t.id: "unseen" if unseen(template_of(t), 0.25) else "seen" for t in tasks}
    before = {"greedy": cell("gsm-cot", "greedy@1"), "majority@8": cell("gsm-cot-at-8", "majority@8"),
              "majority@16": cell("gsm-cot", "majority@16")}
    comparisons = [("before", before)]
    for stage in ("sft", "dpo"):
        run = f"gsm-after-{stage}"
        after = {"greedy": cell(run, "greedy@1"), "majority@8": cell(run, "majority@8")}
        if len(after["greedy"]) == 100:
            comparisons.append(("after SFT" if stage == "sft" else "after SFT + DPO", after))
    for label, after in comparisons[1:]:
        print(f"{label} against before (mean difference in accuracy, paired over questions, 95% CI):")
        for which in ("all", "seen", "unseen"):
            questions = [q for q in after["greedy"] if which == "all" or split[q] == which]
            print(f"  {which} templates ({len(questions)} questions): "
                  f"greedy {paired(before['greedy'], after['greedy'], questions)}; "
                  f"greedy after - majority@16 before {paired(before['majority@16'], after['greedy'], questions)}; "
                  f"majority@8 {paired(before['majority@8'], after['majority@8'], questions)}")
    for stage in ("sft", "dpo"):  # the chain_sum ladder: another task, never trained on
        after, voted = cell(f"ladder-after-{stage}", "greedy@1"), cell(f"ladder-after-{stage}", "majority@8")
        if len(after) == 50:
            questions = sorted(after)
            print(f"ladder after {stage.upper()} against before (50 questions): greedy "
                  f"{paired(cell('ladder', 'greedy@1'), after, questions)}; majority@8 "
                  f"{paired(cell('ladder-at-8', 'majority@8'), voted, questions)}")
    for task, run, size in (("gsm_symbolic", "gsm", 100), ("ladder", "ladder", 50)):  # what DPO itself added
        sft, dpo = cell(f"{run}-after-sft", "greedy@1"), cell(f"{run}-after-dpo", "greedy@1")
        if len(dpo) == size:
            questions = sorted(dpo)
            answers = cell(f"{run}-after-sft", "greedy@1", "answer"), cell(f"{run}-after-dpo", "greedy@1", "answer")
            changed = sum(answers[0][q] != answers[1][q] for q in questions)
            voted = cell(f"{run}-after-sft", "majority@8"), cell(f"{run}-after-dpo", "majority@8")
            print(f"{task} after SFT + DPO against after SFT ({size} questions): greedy {paired(sft, dpo, questions)} "
                  f"({changed} greedy answers changed); majority@8 {paired(*voted, questions)}")
    epyc, here = cell("gsm-after-sft-epyc", "greedy@1"), cell("gsm-after-sft", "greedy@1")
    if epyc and here:
        questions = sorted(epyc)
        answers = cell("gsm-after-sft-epyc", "greedy@1", "answer"), cell("gsm-after-sft", "greedy@1", "answer")
        same = sum(answers[0][q] == answers[1][q] for q in questions)
        print(f"two SFT models from the same data, seed and settings (EPYC; Xeon with AMX), on the {len(questions)} "
              f"questions both answered: greedy accuracy {sum(epyc[q] for q in questions) / len(questions):.2f} and "
              f"{sum(here[q] for q in questions) / len(questions):.2f}, difference {paired(epyc, here, questions)}; "
              f"the same greedy answer on {same} of {len(questions)}; majority@8 difference "
              f"{paired(cell('gsm-after-sft-epyc', 'majority@8'), cell('gsm-after-sft', 'majority@8'), questions)}")
    revisions(split)


if __name__ == "__main__":
    main()
