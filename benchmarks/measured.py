"""Write the lines `ponder demo` prints after its answers: what each of its two ways measured on an evaluation
set, from `ponder eval` stores, with the command that made each store.

    .venv/bin/python benchmarks/measured.py \
        --way "one sample (greedy, chain of thought)=runs/gsm-program.db:greedy@1" \
        --way "majority of 8 programs=runs/gsm-program.db:majority@8"

Writes src/ponder/measured.json (for the store's model); prints the lines.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ponder.eval.metrics import summarize
from ponder.jobs import RunStore

OUT = Path(__file__).resolve().parent.parent / "src" / "ponder" / "measured.json"


def eval_command(settings: dict) -> str:
    """The `ponder eval` command that made a store, from the settings it records."""
    parts = [f"ponder eval --model {settings['model']} --task {settings['tasks']} --size {settings['size']}",
             f"--task-seed {settings['task_seed']} --strategies {','.join(settings['strategies'])}",
             f"--budgets {','.join(map(str, settings['budgets']))}"]
    if settings.get("answer_format", "cot") != "cot":
        parts.append(f"--format {settings['answer_format']}")
    if settings.get("verifier"):
        parts.append(f"--verifier {settings['verifier']}")
    parts.append(f"--temperature {settings['temperature']} --max-tokens {settings['max_tokens']}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--way", action="append", required=True, help="LABEL=STORE:CELL, e.g. ...=runs/x.db:majority@8")
    args = parser.parse_args()
    lines, models = [], set()
    for way in args.way:
        label, _, where = way.partition("=")
        path, _, cell = where.rpartition(":")
        store = RunStore.existing(Path(path))
        rows = [r for _, r in store.items()]
        found = [c for c in summarize(rows) if c.key == cell and c.difficulty_bin is None]
        if not found:
            raise SystemExit(f"{path} has no cell {cell}")
        c = found[0]
        models.add(store.settings["model"])
        lines.append({"label": label, "accuracy": c.accuracy, "low": c.low, "high": c.high, "questions": c.questions,
                      "task": store.settings["tasks"], "tflops": c.flops / 1e12, "cell": cell,
                      "command": eval_command(store.settings)})
    if len(models) != 1:
        raise SystemExit(f"the ways must come from runs of one model, not {sorted(models)}")
    measured = json.loads(OUT.read_text()) if OUT.exists() else {}
    measured[models.pop()] = lines
    partial = OUT.with_suffix(".partial")
    partial.write_text(json.dumps(measured, indent=1) + "\n")
    os.replace(partial, OUT)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
