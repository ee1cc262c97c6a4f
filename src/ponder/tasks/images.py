"""Synthetic high-resolution image questions, drawn on the fly with Pillow (nothing to download):

- reading: a 6-digit number in black, about 27 pixels high (3% of the image), in DejaVu Sans or Sans Mono, at a
  random place on an 896 x 896 white image among 4 to 9 coloured shapes: "What number is written in the image?"
- counting: "How many red circles are there?" among shapes of other kinds and colours;
- text: sums of two one-digit numbers, asked without an image, to check that a model with eyes still answers text
  questions.

One seed, one list of questions, on every machine: fonts come from matplotlib's package data, not the system.
"""

from __future__ import annotations

import random
import re
from collections import Counter
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
    marks: tuple[tuple[str, float, float], ...] = ()  # (a digit or "shape colour", centre x, centre y): the same

    def check(self, completion: str) -> bool:
        """Right when the last number in the completion is the answer ("3 + 4 = 7", "There are 2 red circles.")."""
        found = re.findall(r"\d+", completion.replace(",", ""))
        return bool(found) and found[-1] == self.answer


def caption(q: ImageQuestion) -> str:
    """What is in the image, in a fixed order: the number, then how many of each (shape, colour) there are. The
    vision models' first training stage learns from these (as NVLM's and LLaVA's learn from captions first)."""
    counts = Counter(q.shapes)
    shapes = [f"{counts[(s, c)]} {c} {s}{'s' if counts[(s, c)] > 1 else ''}"
              for s in SHAPES for c in COLOURS if counts[(s, c)]]
    number = f"The number {q.answer}." if q.kind == "reading" else "No number."
    return f"{number} {', '.join(shapes)}." if shapes else number


def questions(kind: str, n: int, seed: int) -> list[ImageQuestion]:
    """n questions of one kind; the same seed gives the same questions (and images)."""
    if kind not in KINDS:
        raise ValueError(f"unknown image task {kind!r}: use one of {', '.join(KINDS)}")
    draw = {"reading": reading, "counting": counting, "text": text}[kind]
    return [draw(random.Random(f"{kind}/{seed}/{i}")) for i in range(n)]


def reading(rng: random.Random) -> ImageQuestion:
    image, taken, drawn, marks = Image.new("RGB", (SIZE, SIZE), "white"), [], [], []
    number = draw_number(image, rng, taken, marks)
    draw_shapes(image, rng, rng.randint(4, 9), taken, lambda: (rng.choice(SHAPES), rng.choice(list(COLOURS))), drawn,
                marks)
    return ImageQuestion("reading", "What number is written in the image?", number, image, tuple(drawn),
                         tuple(marks))


def counting(rng: random.Random) -> ImageQuestion:
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    count, others = rng.randint(0, 6), rng.randint(3, 8)

    def other() -> tuple[str, str]:
        while True:
            pick = (rng.choice(SHAPES), rng.choice(list(COLOURS)))
            if pick != (shape, colour):
                return pick

    image, drawn, marks = Image.new("RGB", (SIZE, SIZE), "white"), [], []
    taken = draw_shapes(image, rng, count, [], lambda: (shape, colour), drawn, marks)
    draw_shapes(image, rng, others, taken, other, drawn, marks)
    return ImageQuestion("counting", f"How many {colour} {shape}s are there?", str(count), image, tuple(drawn),
                         tuple(marks))


def text(rng: random.Random) -> ImageQuestion:
    a, b = rng.randint(2, 9), rng.randint(2, 9)  # sums the 135M base model mostly gets right, so losses show
    return ImageQuestion("text", f"What is {a} + {b}? Answer with the number only.", str(a + b), None)


def draw_number(image: Image.Image, rng: random.Random, taken: list[tuple[int, int, int, int]],
                marks: list[tuple[str, float, float]]) -> str:
    """A random 6-digit number where nothing else is; each digit's centre (from the font's advances) in `marks`."""
    number, font = str(rng.randint(100_000, 999_999)), digit_font(rng.choice(FONTS))
    left, top, right, bottom = font.getbbox(number)
    for _attempt in range(200):
        x, y = rng.randint(8, image.width - right - 8), rng.randint(8, image.height - bottom - 8)
        box = (x + left - 6, y + top - 6, x + right + 6, y + bottom + 6)
        if not any(_overlap(box, other) for other in taken):
            break
    else:
        raise RuntimeError(f"no room for a number on a {image.width} x {image.height} image")
    taken.append(box)
    ImageDraw.Draw(image).text((x, y), number, fill="black", font=font)
    for i, digit in enumerate(number):
        marks.append((digit, x + font.getlength(number[:i]) + font.getlength(digit) / 2, y + (top + bottom) / 2))
    return number


def draw_shapes(image: Image.Image, rng: random.Random, n: int, taken: list[tuple[int, int, int, int]],
            pick: Callable[[], tuple[str, str]], drawn: list[tuple[str, str]],
            marks: list[tuple[str, float, float]]) -> list[tuple[int, int, int, int]]:
    """Draw n shapes where nothing else is (boxes in `taken`, which grows), noting each in `drawn` and its centre in
    `marks`; returns `taken`."""
    draw = ImageDraw.Draw(image)
    for _ in range(n):
        for _attempt in range(200):
            r = rng.randint(18, 40)
            cx, cy = rng.randint(r + 4, image.width - r - 4), rng.randint(r + 4, image.height - r - 4)
            box = (cx - r - 4, cy - r - 4, cx + r + 4, cy + r + 4)
            if not any(_overlap(box, other) for other in taken):
                break
        else:  # never seen with at most 15 shapes this small; a silent skip would make a count wrong
            raise RuntimeError(f"no room for {n} shapes on a {image.width} x {image.height} image")
        kind, colour = pick()
        drawn.append((kind, colour))
        marks.append((f"{kind} {colour}", cx, cy))
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
def digit_font(name: str) -> ImageFont.FreeTypeFont:
    """The font at the size whose digits stand DIGIT_HEIGHT pixels high."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    probe = ImageFont.truetype(str(path), 100)
    _, top, _, bottom = probe.getbbox("0123456789")
    return ImageFont.truetype(str(path), round(100 * DIGIT_HEIGHT / (bottom - top)))
