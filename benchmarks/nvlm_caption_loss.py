"""Does a trained vision model read the image? Its loss on the digit tokens of held-out captions, against ln 10.

    .venv/bin/python benchmarks/nvlm_caption_loss.py runs/vision/d runs/vision/x [--size 6]

Stage 1 teaches captions ("The number 219308. 1 red circle, ..."): a model that reads the image pays far less than
ln 10 = 2.30 nats for each digit; one that only learned the caption's format pays about that. Other tokens (words,
punctuation) are reported apart. Reading images of seed 1 (training draws from 100000 and up).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ponder.stats import mean
from ponder.tasks.images import caption, questions
from ponder.train.vision import CAPTION
from ponder.vision.checkpoint import load_vision


def caption_losses(folder: Path, size: int) -> tuple[list[float], list[float]]:
    """Per answer token of `size` held-out captions: (the digits' losses, the other tokens' losses)."""
    model = load_vision(folder)
    digits, other = [], []
    for q in questions("reading", size, 1):
        tiles = model.tiles(q.image)
        seq = model.layout(CAPTION, tiles, caption(q))
        with torch.no_grad():
            embeds, labels, hook = model.inputs([seq], model.encode([tiles]))
            logits = model.decoder.head(model.decoder.hidden_states(None, embeds=embeds, before_block=hook))
        logps = torch.log_softmax(logits[0, :-1].float(), -1)
        for t, target in enumerate(labels[0, 1:].tolist()):
            if target != -100:
                piece = model.tokenizer.decode([target]).strip()
                (digits if len(piece) == 1 and piece.isdigit() else other).append(-float(logps[t, target]))
    return digits, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="vision model folders (`ponder train vision`)")
    parser.add_argument("--size", type=int, default=6, help="held-out captions")
    args = parser.parse_args()
    for folder in args.folders:
        digits, other = caption_losses(folder, args.size)
        print(f"{folder}: {len(digits)} digit tokens, mean loss {mean(digits):.3f} (chance: ln 10 = "
              f"{math.log(10):.3f}); {len(other)} other tokens, {mean(other):.3f}")


if __name__ == "__main__":
    main()
