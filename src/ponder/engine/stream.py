"""Single-sequence generation that yields tokens as they come: the CLI's `generate` and `chat`.

The batched, tree-shaped engine is its own layer; this is the plain loop it is measured against.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ponder.engine.sampling import SamplingParams, sample
from ponder.errors import ContextOverflow
from ponder.models.kv_cache import DenseKVCache
from ponder.models.transformer import Transformer


@torch.inference_mode()
def generate_tokens(model: Transformer, prompt: list[int], params: SamplingParams,
                    stop_ids: frozenset[int] = frozenset()) -> Iterator[int]:
    """Token ids after `prompt`, up to max_tokens or the first stop id (which is not yielded)."""
    limit = model.cfg.max_seq_len
    if len(prompt) + params.max_tokens > limit:
        raise ContextOverflow(
            f"the prompt has {len(prompt)} tokens and {params.max_tokens} more were asked for, but the model's "
            f"context window is {limit}: shorten the prompt or lower --max-tokens")
    generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
    dtype = model.norm.weight.dtype
    cache = DenseKVCache(model.cfg, 1, len(prompt) + params.max_tokens, dtype=dtype)
    tokens = torch.tensor([prompt])
    positions = torch.arange(len(prompt))[None]
    for _ in range(params.max_tokens):
        logits = model(tokens, positions, cache)[:, -1]
        token = int(sample(logits, params, generator)[0])
        if token in stop_ids:
            return
        yield token
        tokens, positions = torch.tensor([[token]]), positions[:, -1:] + 1
