"""How often `ponder demo`'s default way of thinking harder gets the demo question right, over seeds.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 10

Prints each seed's answer and the count right; the README quotes it.
"""

from __future__ import annotations

import argparse

from ponder.demo import ANSWER, DEFAULT_THINKING, QUESTION, attempt
from ponder.engine.backends import open_generator
from ponder.models.registry import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    generator = open_generator(args.model)
    right = 0
    for seed in range(args.seeds):
        a = attempt(generator, QUESTION, ANSWER, "thinking harder", DEFAULT_THINKING, seed)
        right += bool(a.right)
        print(f"seed {seed}: {a.answer} ({'right' if a.right else 'wrong'}), {a.seconds:.1f} s, {a.tflops:.2f} TFLOPs",
              flush=True)
    print(f"{right} of {args.seeds} seeds right: {DEFAULT_THINKING} on {args.model}")


if __name__ == "__main__":
    main()
