"""Dynamic high-resolution tiling (InternVL 1.5, as NVLM uses it): an image is cut into up to `max_tiles` square
tiles on the grid whose aspect ratio is closest to the image's, plus a global thumbnail (the whole image at one
tile's size) when there is more than one tile. However large the image, the model sees at most max_tiles + 1
tiles of `size` pixels."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ponder.errors import BadImage

TILE = 448  # pixels a side, as NVLM and InternVL


@dataclass(frozen=True)
class Tiles:
    tiles: list[Image.Image]  # row by row, each size x size
    thumbnail: Image.Image | None  # None when the image is one tile
    grid: tuple[int, int]  # (columns, rows)


def grids(max_tiles: int) -> list[tuple[int, int]]:
    """Every (columns, rows) with at most max_tiles tiles, fewest tiles first."""
    found = {(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1) if c * r <= max_tiles}
    return sorted(found, key=lambda g: (g[0] * g[1], g))


def closest_grid(width: int, height: int, max_tiles: int = 6, size: int = TILE) -> tuple[int, int]:
    """The grid whose aspect ratio is closest to the image's; on a tie, the larger grid if the image has more than
    half its pixels (InternVL's `find_closest_aspect_ratio`, so a big square image gets 2x2 and a small one 1x1)."""
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for cols, rows in grids(max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * size * size * cols * rows:
            best = (cols, rows)
    return best


def tile(image: Image.Image, max_tiles: int = 6, size: int = TILE, thumbnail: bool = True) -> Tiles:
    cols, rows = closest_grid(image.width, image.height, max_tiles, size)
    image = image.convert("RGB")
    resized = image.resize((cols * size, rows * size), Image.Resampling.BICUBIC)
    tiles = [resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
             for r in range(rows) for c in range(cols)]
    thumb = image.resize((size, size), Image.Resampling.BICUBIC) if thumbnail and len(tiles) > 1 else None
    return Tiles(tiles, thumb, (cols, rows))


def open_image(source: str | Path | bytes) -> Image.Image:
    """An image from a path or bytes, fully decoded, or one clear BadImage."""
    where = "the image" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():  # a big image is fine (it is tiled); only Pillow's hard limit is refused
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            image.load()
    except FileNotFoundError:
        raise BadImage(f"{where} does not exist: give the path of a PNG, JPEG or WebP file") from None
    except Image.DecompressionBombError as e:  # pixels past Pillow's safety limit: decoding could fill memory
        raise BadImage(f"{where} is too large to decode safely ({e}): scale it down first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"{where} is not a readable image ({type(e).__name__}): give a PNG, JPEG or WebP file") from None
    if image.width == 0 or image.height == 0:
        raise BadImage(f"{where} has no pixels ({image.width} x {image.height}): give a real image")
    return image
