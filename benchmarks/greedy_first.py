"""Best-of-n whose first candidate is the greedy answer, replayed from stored runs (no sampling).

    .venv/bin/python benchmarks/greedy_first.py runs/humaneval-0.5b.db runs/humaneval-0.5b-greedy.db

On HumanEval the 0.5B's samples at temperature 0.7 are worse one at a time than its greedy answer (best of 2 is
below greedy), and the code verifier often scores several programs alike (all pass the prompt's examples). This
replays best-of-n with the greedy program as candidate 1 and the pool's first n-1 samples after it; the verifier's
ties go to the earlier candidate, so to greedy. Greedy's score is computed here (the sandbox, the prompt's examples
only); the samples' scores are the pool's. FLOPs: greedy's plus (n-1)/n of best-of-n's (the prompt is shared).
A variant chosen after seeing session 13's failure analysis: exploratory, not a held-out claim.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.jobs import RunStore
from ponder.stats import bootstrap_interval, mean
from ponder.tasks import load_humaneval
from ponder.verify.code import CodeExecutionVerifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pool", type=Path, help="a `ponder eval` HumanEval store with bon cells (16 samples)")
    parser.add_argument("greedy", type=Path, help="the same model's greedy store (it keeps greedy's text)")
    args = parser.parse_args()
    pool = dict(RunStore.existing(args.pool).items())
    greedy = {key: row for key, row in RunStore.existing(args.greedy).items()}
    tasks = {t.id: t for t in load_humaneval()}
    verifier = CodeExecutionVerifier()
    rows: dict[int, list[tuple[bool, float]]] = {n: [] for n in (2, 4, 8, 16)}
    plain: dict[int, list[bool]] = {n: [] for n in rows}
    for key, row in sorted(pool.items()):
        task = tasks[row["question"]]
        first = greedy[key]["results"]["greedy@1"]
        # Older stores keep greedy's extracted program, not its text: a code block of it extracts to the same.
        text = first.get("text") or (f"```python\n{first['answer']}\n```" if first.get("answer") else "")
        [scores] = verifier.score(task, [Sequence((), text=text)], Budget())
        candidates = [(max(scores, default=0.0), bool(first["correct"]))] + [
            (max(s["step_scores"], default=0.0), bool(s["correct"])) for s in row["pool"]]
        for n, got in rows.items():
            best = max(range(n), key=lambda i: (candidates[i][0], -i))  # ties: the earlier candidate
            flops = first["flops"] + (n - 1) / n * row["results"][f"bon@{n}"]["flops"]
            got.append((candidates[best][1], flops))
            plain[n].append(bool(row["results"][f"bon@{n}"]["correct"]))
    print(f"{len(pool)} problems; greedy alone {mean([float(greedy[k]['results']['greedy@1']['correct']) for k in pool]):.2f}")
    print("| n | best of n, greedy first (95% CI) | TFLOPs a problem | best of n sampled (as stored) |")
    print("|---|---|---|---|")
    for n, got in rows.items():
        right = [float(c) for c, _ in got]
        low, high = bootstrap_interval(right)
        print(f"| {n} | {mean(right):.2f} ({low:.2f}-{high:.2f}) | {mean([f for _, f in got]) / 1e12:.2f} | "
              f"{mean([float(c) for c in plain[n]]):.2f} |")


if __name__ == "__main__":
    main()
