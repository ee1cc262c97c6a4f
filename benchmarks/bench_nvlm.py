"""NVLM-D, -X and -H head to head on held-out generated images: the README's vision table.

    .venv/bin/python benchmarks/bench_nvlm.py runs/vision/d runs/vision/x runs/vision/h ... --size 100

For each trained vision folder: reading and counting accuracy on `size` images each, and text-only accuracy on
`size` two-number sums (against the base decoder on the same sums), each with a 95% bootstrap interval; image tokens
in the decoder's sequence; seconds a question (greedy, one at a time; on the GPU where there is one, else 2
threads); and from its training log the decoder tokens and images trained per second (each timing says its
device). Questions come from seed 1 (training draws from seeds 100000 and up, so none was seen). Every answer is
appended to FOLDER/bench-SEED.jsonl as it comes: a killed run continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ponder.stats import bootstrap_interval, mean
from ponder.tasks.images import questions
from ponder.vision.checkpoint import load_vision

KINDS = ("reading", "counting", "text")


def answers(folder: Path, size: int, seed: int) -> dict[str, list[dict]]:
    """Every question's result for one model, continuing what an earlier run wrote."""
    log = folder / f"bench-{seed}.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    have = {(r["kind"], r["index"]) for r in done}
    model = None
    with log.open("a") as out:
        for kind in KINDS:
            for index, q in enumerate(questions(kind, size, seed)):
                if (kind, index) in have:
                    continue
                model = model or load_vision(folder)
                got = model.generate(q.image, q.question, max_tokens=16)
                row = {"kind": kind, "index": index, "answer": got.text, "right": q.check(got.text),
                       "image_tokens": got.image_tokens, "prompt_tokens": got.prompt_tokens, "seconds": got.seconds,
                       "device": model.device.type}
                out.write(json.dumps(row) + "\n")
                out.flush()
                done.append(row)
    return {kind: sorted((r for r in done if r["kind"] == kind and r["index"] < size), key=lambda r: r["index"])
            for kind in KINDS}


def base_text(size: int, seed: int, base: str) -> list[bool]:
    """The base decoder on the same sums: a D model with no image is exactly it (tests/test_vision.py)."""
    from ponder.models.loader import load
    from ponder.vision.model import VisionConfig, VisionLanguageModel, default_device

    loaded = load(base)
    model = VisionLanguageModel(loaded.model, loaded.tokenizer, VisionConfig(design="d")).eval()
    model.to(default_device())
    return [q.check(model.generate(None, q.question, max_tokens=16).text) for q in questions("text", size, seed)]


def cell(values: list[bool]) -> str:
    low, high = bootstrap_interval([float(v) for v in values])
    return f"{mean([float(v) for v in values]):.2f} [{low:.2f}, {high:.2f}]"


def training_rates(folder: Path) -> tuple[float, float, str]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return mean([r["tokens_per_s"] for r in rows]), mean([r["images_per_s"] for r in rows]), devices(rows)


def devices(rows: list[dict]) -> str:
    """Where rows were timed (rows from before the device was recorded ran on the CPU)."""
    return "+".join(sorted({r.get("device", "cpu") for r in rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="vision model folders (`ponder train vision`)")
    parser.add_argument("--size", type=int, default=100, help="questions of each kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    header = ["model", "design", "tags", "thumbnail", "reading [95% CI]", "counting [95% CI]", "text [95% CI]",
              "image tokens", "s / image", "train tokens/s", "train images/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    bases: dict[str, list[bool]] = {}
    for folder in args.folders:
        config = json.loads((folder / "vision.json").read_text())
        got = answers(folder, args.size, args.seed)
        if config["base"] not in bases:
            bases[config["base"]] = base_text(args.size, args.seed, config["base"])
            row = [config["base"], "(text only)", "", "", "", "", cell(bases[config["base"]]), "0", "", "", ""]
            lines.append("| " + " | ".join(row) + " |")
        tokens, images, trained_on = training_rates(folder)
        pictures = got["reading"] + got["counting"]
        row = [folder.name, config["design"].upper(), "yes" if config["tags"] else "no",
               "yes" if config["thumbnail"] else "no", cell([r["right"] for r in got["reading"]]),
               cell([r["right"] for r in got["counting"]]), cell([r["right"] for r in got["text"]]),
               f"{mean([r['image_tokens'] for r in pictures]):.0f}",
               f"{mean([r['seconds'] for r in pictures]):.2f} ({devices(pictures)})",
               f"{tokens:.0f} ({trained_on})", f"{images:.2f} ({trained_on})"]
        lines.append("| " + " | ".join(row) + " |")
    print("\n".join(lines))  # markdown: the README's table as it is
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
