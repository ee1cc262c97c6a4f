"""A small vision transformer for 448-pixel tiles, trained here from scratch (no package installs pretrained
encoder weights offline).

A convolutional stem (five stride-2 3x3 convolutions, 448 -> 14) makes the patch embedding: Xiao et al. 2021
found such a stem makes a ViT train faster and steadier than one big linear patch, which matters at this scale.
Then pre-norm transformer layers (torch's own) over the 14 x 14 grid with learned positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn


@dataclass(frozen=True)
class EncoderConfig:
    size: int = 448  # tile pixels a side
    stem: tuple[int, ...] = (16, 32, 64, 128)  # channels of the first stride-2 convolutions; a last one gives dim
    dim: int = 192
    layers: int = 4
    heads: int = 3

    @property
    def grid(self) -> int:  # features a side
        return self.size // 2 ** (len(self.stem) + 1)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stem": list(self.stem)}  # as JSON reads it back

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncoderConfig:
        return cls(**{**data, "stem": tuple(data["stem"])})


class ImageEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        stem: list[nn.Module] = []
        channels = (3, *cfg.stem)
        for a, b in pairwise(channels):
            stem += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.GELU()]
        stem.append(nn.Conv2d(channels[-1], cfg.dim, 3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.positions = nn.Parameter(torch.randn(cfg.grid * cfg.grid, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, pixels: Tensor) -> Tensor:
        """Tiles [N, 3, size, size] with values in [0, 1] -> features [N, grid, grid, dim]."""
        x = self.stem((pixels - 0.5) / 0.5)  # [N, dim, grid, grid]
        n, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self.positions
        return self.norm(self.layers(x)).view(n, h, w, d)


def to_pixels(images: list[Image.Image]) -> Tensor:
    """RGB tiles of one size -> [N, 3, size, size] in [0, 1], as the encoder takes them."""
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images])).permute(0, 3, 1, 2).float() / 255
