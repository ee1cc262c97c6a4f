"""A decode step with one call per layer: a GGUF model's blocks run whole in csrc/gguf_decode.cpp.

At one row a step's matmuls take ~20 ms on 2 cores; through the nn.Modules, one PyTorch op at a time (169
matmul calls, norms, rotary rolls, the cache's writes), the step took ~30. Here Python calls each block once,
with the same weights and the same kernels. Only decode steps (one new token per row) take this way; prefill
stays on the modules, where the matmuls dominate. A model qualifies when every linear layer of every block
multiplies GGUF blocks (`GGUFLinear`); otherwise `fused_layers` says None and the modules do the work.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ponder.engine import cpu_kernels
from ponder.engine.gguf_linear import GGUFLinear
from ponder.engine.paged_cache import KVPool
from ponder.models.transformer import Transformer


class FusedLayer(NamedTuple):
    """One block's arguments to `gguf_decode_layer`, gathered once."""

    weights: list[Tensor]  # raw GGUF bytes of q, k, v, o, gate, up, down
    qtypes: list[int]
    norms: list[Tensor]  # the attention's and the MLP's RMSNorm weights
    biases: list[Tensor]  # q, k, v's; empty where the model has none


def fused_layers(model: Transformer) -> list[FusedLayer] | None:
    """Every block's weights for the fused step, or None where some linear layer is not a GGUFLinear."""
    layers = []
    for block in model.layers:
        linears = [block.attn.q, block.attn.k, block.attn.v, block.attn.o, block.mlp.gate, block.mlp.up,
                   block.mlp.down]
        if not all(isinstance(m, GGUFLinear) for m in linears) or len({m.isa for m in linears}) > 1:
            return None
        biases = [m.bias.float().contiguous() if m.bias is not None else torch.empty(0) for m in linears[:3]]
        norms = [norm.weight.detach().float().contiguous() for norm in (block.attn_norm, block.mlp_norm)]
        layers.append(FusedLayer([m.raw for m in linears], [int(m.qtype) for m in linears], norms, biases))
    return layers


@torch.inference_mode()
def decode_hidden(model: Transformer, layers: list[FusedLayer], tokens: Tensor, positions: Tensor, pool: KVPool,
                  write_slots: Tensor, read_slots: Tensor, lengths: Tensor) -> Tensor:
    """The final normalised hidden states [B, dim] after one new token per row: tokens, positions and
    write_slots [B], read_slots [B, S] and lengths [B] as `PagedKVCache` takes them."""
    kernels = cpu_kernels.load_gguf(model.layers[0].attn.q.isa)
    x = model.embed(tokens[:, None])[:, 0].float().contiguous()
    angles = positions.float()[:, None] * model.inv_freq  # in fp32, as Transformer.hidden_states
    cos, sin = angles.cos().contiguous(), angles.sin().contiguous()
    eps = model.cfg.norm_eps
    write_slots, read_slots, lengths = write_slots.contiguous(), read_slots.contiguous(), lengths.contiguous()
    for i, layer in enumerate(layers):
        x = kernels.gguf_decode_layer(x, layer.weights, layer.qtypes, layer.norms, layer.biases, cos, sin,
                                      pool.k[i], pool.v[i], write_slots, read_slots, lengths, eps)
    return model.norm(x)
