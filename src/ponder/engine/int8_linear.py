"""The fast CPU path: weight-only int8 linear layers with a small AVX2 kernel of ponder's own.

Decoding is bound by reading weights: fp32 Qwen2.5-0.5B reads 2 GB per step. Stored as int8 with one
fp32 scale per output row, it reads a quarter of that; the kernel widens each column of a block of 16
output rows to fp32 once and uses it for up to 4 rows of the batch at a time (a 4 x 16 tile in
registers), so one sequence runs at memory speed and a batch reuses each block from cache.
Activations stay fp32 (unlike llama.cpp, which rounds them to 8 bits too). `quantize_model` swaps
the layers in place, as gpt-fast does; the fp32 model remains the exact reference. The kernel is
csrc/int8_linear.cpp (built by `cpu_kernels`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ponder.engine import cpu_kernels


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights, one fp32 scale per output row (symmetric), fp32 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        (o, i), q = w.shape, torch.round(w / scale[:, None]).to(torch.int8)
        self.out_features, padded = o, -(-o // 16) * 16  # the kernel works in blocks of 16 rows: pad with zeros
        q = torch.cat([q, q.new_zeros(padded - o, i)])
        self.register_buffer("weight", q.view(padded // 16, 16, i).transpose(1, 2).contiguous())  # [O/16, I, 16]
        self.register_buffer("scale", torch.cat([scale, scale.new_ones(padded - o)]).contiguous())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)

    def dequantized(self) -> Tensor:
        """The fp32 weight [out, in] that this layer computes with."""
        blocks, i = self.weight.shape[:2]
        w = self.weight.transpose(1, 2).reshape(blocks * 16, i).float() * self.scale[:, None]
        return w[: self.out_features]

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = cpu_kernels.load().int8_linear(x.reshape(-1, shape[-1]).float().contiguous(), self.weight, self.scale)
        if y.shape[1] != self.out_features:
            y = y[:, : self.out_features]
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def quantize_model(model: nn.Module) -> nn.Module:
    """Swap every nn.Linear whose sizes are multiples of 8 (all of the family's) for an Int8Linear, in place."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear) and child.in_features % 8 == 0 and child.out_features % 8 == 0:
            setattr(model, name, Int8Linear(child))
        else:
            quantize_model(child)
    return model
