"""Synthetic high-resolution image questions, drawn on the fly with Pillow (nothing to download):

- reading: a 6-digit number in black, about 27 pixels high (3% of the image), in DejaVu Sans or Sans Mono, at a
  random place on an 896 x 896 white image among 4 to 9 coloured shapes: "What number is written in the image?"
- counting: "How many red circles are there?" among shapes of other kinds and colours;
- text: two-number sums, asked without an image, to check that a model with eyes still answers text questions.

One seed, one list of questions, on every machine: fonts come from matplotlib's package data, not the system.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 896
KINDS = ("reading", "counting", "text")
COLOURS = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 220), "orange": (240, 150, 20),
           "purple": (140, 60, 180)}
SHAPES = ("circle", "square", "triangle")
FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf")
DIGIT_HEIGHT = 27


@dataclass(frozen=True)
class ImageQuestion:
    kind: str
    question: str
    answer: str
    image: Image.Image | None  # None for text questions
    shapes: tuple[tuple[str, str], ...] = ()  # (shape, colour) of every shape drawn: an encoder's training labels

    def check(self, completion: str) -> bool:
        """Right when the first number in the completion is the answer."""
        found = re.search(r"\d+", completion.replace(",", ""))
        return found is not None and found.group() == self.answer


def questions(kind: str, n: int, seed: int) -> list[ImageQuestion]:
    """n questions of one kind; the same seed gives the same questions (and images)."""
    if kind not in KINDS:
        raise ValueError(f"unknown image task {kind!r}: use one of {', '.join(KINDS)}")
    draw = {"reading": reading, "counting": counting, "text": text}[kind]
    return [draw(random.Random(f"{kind}/{seed}/{i}")) for i in range(n)]


def reading(rng: random.Random) -> ImageQuestion:
    number = str(rng.randint(100_000, 999_999))
    font = _font(rng.choice(FONTS))
    image = Image.new("RGB", (SIZE, SIZE), "white")
    left, top, right, bottom = font.getbbox(number)
    x, y = rng.randint(8, SIZE - right - 8), rng.randint(8, SIZE - bottom - 8)
    taken = [(x + left - 6, y + top - 6, x + right + 6, y + bottom + 6)]
    drawn: list[tuple[str, str]] = []
    _shapes(image, rng, rng.randint(4, 9), taken, lambda: (rng.choice(SHAPES), rng.choice(list(COLOURS))), drawn)
    ImageDraw.Draw(image).text((x, y), number, fill="black", font=font)
    return ImageQuestion("reading", "What number is written in the image?", number, image, tuple(drawn))


def counting(rng: random.Random) -> ImageQuestion:
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    count, others = rng.randint(0, 6), rng.randint(3, 8)

    def other() -> tuple[str, str]:
        while True:
            pick = (rng.choice(SHAPES), rng.choice(list(COLOURS)))
            if pick != (shape, colour):
                return pick

    image, drawn = Image.new("RGB", (SIZE, SIZE), "white"), []
    taken = _shapes(image, rng, count, [], lambda: (shape, colour), drawn)
    _shapes(image, rng, others, taken, other, drawn)
    return ImageQuestion("counting", f"How many {colour} {shape}s are there?", str(count), image, tuple(drawn))


def text(rng: random.Random) -> ImageQuestion:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return ImageQuestion("text", f"What is {a} + {b}? Answer with the number only.", str(a + b), None)


def _shapes(image: Image.Image, rng: random.Random, n: int, taken: list[tuple[int, int, int, int]],
            pick: Callable[[], tuple[str, str]], drawn: list[tuple[str, str]]) -> list[tuple[int, int, int, int]]:
    """Draw n shapes where nothing else is (boxes in `taken`, which grows), noting each in `drawn`; returns
    `taken`."""
    draw = ImageDraw.Draw(image)
    for _ in range(n):
        for _attempt in range(200):
            r = rng.randint(18, 40)
            cx, cy = rng.randint(r + 4, SIZE - r - 4), rng.randint(r + 4, SIZE - r - 4)
            box = (cx - r - 4, cy - r - 4, cx + r + 4, cy + r + 4)
            if not any(_overlap(box, other) for other in taken):
                break
        else:  # never seen with at most 15 shapes this small; a silent skip would make a count wrong
            raise RuntimeError(f"no room for {n} shapes on a {SIZE} x {SIZE} image")
        kind, colour = pick()
        drawn.append((kind, colour))
        fill = COLOURS[colour]
        if kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif kind == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        taken.append(box)
    return taken


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@cache
def _font(name: str) -> ImageFont.FreeTypeFont:
    """The font at the size whose digits stand DIGIT_HEIGHT pixels high."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    probe = ImageFont.truetype(str(path), 100)
    _, top, _, bottom = probe.getbbox("0123456789")
    return ImageFont.truetype(str(path), round(100 * DIGIT_HEIGHT / (bottom - top)))
