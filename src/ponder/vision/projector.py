"""From encoder features to the decoder's width: pixel shuffle (2 x 2 neighbours into one token, 4x fewer
tokens, as NVLM and InternVL) and a two-layer MLP."""

from __future__ import annotations

from torch import Tensor, nn


def pixel_shuffle(features: Tensor, factor: int = 2) -> Tensor:
    """[N, h, w, C] -> [N, (h / factor) * (w / factor), factor * factor * C]: each token carries a block."""
    n, h, w, c = features.shape
    if h % factor or w % factor:
        raise ValueError(f"a {h} x {w} feature grid does not split into {factor} x {factor} blocks")
    x = features.view(n, h // factor, factor, w // factor, factor, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // factor) * (w // factor), factor * factor * c)


class Projector(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, factor: int = 2):
        super().__init__()
        self.factor = factor
        width = factor * factor * encoder_dim
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, decoder_dim), nn.GELU(),
                                 nn.Linear(decoder_dim, decoder_dim))

    def forward(self, features: Tensor) -> Tensor:
        """Encoder features [N, h, w, C] -> image tokens [N, h * w / factor^2, decoder_dim]."""
        return self.mlp(pixel_shuffle(features, self.factor))
