"""The native backend: ponder's own model over a paged KV cache that shares prefixes.

Rows hold lists of blocks (see `block_pool`): a context's blocks are found by their tokens, so the
samples of a prompt and the children of a fork reuse them, within a call and across calls. A row
is admitted only when the pool can hold its worst case; otherwise it waits for others to finish,
and one that could never fit is refused with a clear error.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ponder.engine import cpu_kernels, gguf_decode, int8_linear
from ponder.engine.batched import BatchedGenerator, Group, Job, Row
from ponder.engine.block_pool import SCRATCH, BlockPool
from ponder.engine.paged_cache import KVPool, PagedKVCache
from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter
from ponder.models.loader import LoadedModel

DEFAULT_CACHE_BYTES = 1 << 30


@dataclass
class _Blocks:
    ids: list[int]  # the row's block table: block i holds positions i*block_size ...
    reserved: int  # blocks still promised to the row


class NativeEngine(BatchedGenerator):
    def __init__(self, loaded: LoadedModel, cache_bytes: int = DEFAULT_CACHE_BYTES, block_size: int = 16,
                 dtype: torch.dtype = torch.float32, int8: bool = False, name: str = "native",
                 kv_dtype: torch.dtype | None = None):
        """`int8`: the fast path where this CPU allows (int8 weights, see `int8_linear`, and the decode
        attention kernel, see `paged_cache`); fp32 is exact. `kv_dtype`: the KV cache's (default `dtype`;
        fp16 halves it, as llama.cpp keeps its own)."""
        super().__init__()
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.fast = int8 and cpu_kernels.available()
        if dtype != self.model.norm.weight.dtype:
            self.model = copy.deepcopy(self.model).to(dtype)  # the caller's model stays as it was
        if self.fast:
            # New modules over the same weights (no copy of them): swapping layers leaves the caller's model alone.
            shared = {id(t): t for t in [*self.model.parameters(), *self.model.buffers()]}
            self.model = int8_linear.quantize_model(copy.deepcopy(self.model, memo=shared))
        cfg = self.model.cfg
        kv_dtype = kv_dtype or dtype
        self.decode_kernel = (self.fast and dtype == torch.float32 and kv_dtype in (torch.float32, torch.float16)
                              and cfg.head_dim % 8 == 0)
        # A GGUF model on its blocks decodes a whole layer per call (see gguf_decode), where every layer allows.
        self.fused = gguf_decode.fused_layers(self.model) if self.decode_kernel else None
        self.blocks = BlockPool(cache_bytes // KVPool.bytes_per_block(cfg, block_size, kv_dtype), block_size)
        self.kv = KVPool(cfg, self.blocks.n_blocks, block_size, kv_dtype)
        self.info = ModelInfo(name, cfg.n_params, cfg.max_seq_len, loaded.tokenizer.stop_ids)
        self.usage = Usage()
        self.promised = 0  # blocks reserved for rows in flight, not yet allocated

    # --- admission ----------------------------------------------------------------------------

    def _check(self, seq: Sequence, params: SamplingParams) -> None:
        super()._check(seq, params)
        if 2 * self._worst_case(len(seq.all_tokens), params.max_tokens) > self.blocks.n_blocks - 1:
            raise BadParameter(
                f"a sequence of {len(seq.all_tokens)} + {params.max_tokens} tokens needs more than the KV cache "
                f"holds ({self.blocks.n_blocks - 1} blocks of {self.blocks.block_size}): raise its memory cap")

    def _worst_case(self, context: int, max_tokens: int) -> int:
        return math.ceil((context + max_tokens) / self.blocks.block_size) + 1

    def _admit(self, waiting: list[Group], busy: bool) -> tuple[list[Group], list[Group]]:
        room = self.blocks.available - self.promised
        admitted: list[Group] = []
        for k, group in enumerate(waiting):
            each = self._worst_case(len(group.context), group.params.max_tokens)
            members = group.members
            fit = min(len(members), room // each - 1)  # one more worst case for computing the context
            if fit < len(members) and (fit < 1 or busy or admitted):
                if fit >= 1:
                    return (admitted + [replace(group, members=members[:fit])],
                            [replace(group, members=members[fit:])] + waiting[k + 1:])
                return admitted, waiting[k:]
            admitted.append(group)
            room -= each * (len(members) + 1)
        return admitted, []

    # --- rows and their blocks -----------------------------------------------------------------

    def _row(self, seq: Sequence, params: SamplingParams) -> Row:
        ids, cached = self.blocks.match(seq.all_tokens)
        blocks = _Blocks(ids, self._worst_case(len(seq.all_tokens), params.max_tokens))
        self.promised += blocks.reserved
        return Row(seq, cached=cached, kv=blocks)

    def _open(self, context: tuple[int, ...], params: SamplingParams) -> Row:
        row = self._row(Sequence(context), params)
        row.cached = min(row.cached, len(context) - 1)  # all cached: recompute the last token for its logits
        row.pending = context[row.cached:]
        return row

    def _share(self, holder: Row) -> None:
        self.blocks.register_all(holder.seq.all_tokens, holder.kv.ids)

    def _fork(self, holder: Row, seq: Sequence, params: SamplingParams) -> Row:
        return self._row(seq, params)  # finds the holder's blocks by their tokens

    def _close(self, row: Row, keep: bool) -> None:
        if keep:
            self.blocks.register_all(row.seq.all_tokens[: row.cached], row.kv.ids)
        for block in row.kv.ids:
            self.blocks.release(block)
        self.promised -= row.kv.reserved
        row.kv = _Blocks([], 0)

    def _make_writable(self, row: Row, index: int) -> None:
        """A fresh block past the end; a private copy of a shared block before writing into it."""
        blocks = row.kv.ids
        if index == len(blocks):
            blocks.append(self.blocks.allocate())
        elif not self.blocks.is_private(blocks[index]):
            fresh = self.blocks.allocate()
            self.kv.copy_block(blocks[index], fresh)
            self.blocks.release(blocks[index])
            blocks[index] = fresh
        else:
            return
        row.kv.reserved -= 1
        self.promised -= 1

    # --- the forward pass ------------------------------------------------------------------------

    @torch.inference_mode()
    def states(self, contexts: list[tuple[int, ...]]) -> Tensor:
        """The model's final hidden state after each context [n, dim], computing only what the cache
        lacks (a learned verifier's features at a step's end cost a token or a block) and keeping it."""
        params = SamplingParams(max_tokens=1)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, context in enumerate(contexts):
            self._check(Sequence(context), params)
            groups.setdefault(context, []).append(i)
        out = torch.empty(len(contexts), self.model.cfg.dim)
        job = Job([], params, [])
        waiting = [Group(context, members, job) for context, members in groups.items()]
        while waiting:
            admitted, waiting = self._admit(waiting, busy=False)
            rows, states = self._compute_contexts(admitted, self._hidden)
            for group, state in zip(admitted, states):
                out[group.members] = state
            for row in rows:
                self._close(row, keep=True)
        return out

    def _forward(self, rows: list[Row]) -> Tensor:
        return self.model.head(self._hidden(rows)).float()

    def _hidden(self, rows: list[Row]) -> Tensor:
        """Run every row's pending tokens; the final hidden state after each row's last one [rows, dim]."""
        size = self.blocks.block_size
        width = max(len(r.pending) for r in rows)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        positions = torch.zeros(len(rows), width, dtype=torch.long)  # padding: position 0, masked
        writes = torch.full((len(rows), width), SCRATCH * size, dtype=torch.long)
        for b, r in enumerate(rows):
            for j, token in enumerate(r.pending):
                position = r.cached + j
                self._make_writable(r, position // size)
                tokens[b, j], positions[b, j] = token, position
                writes[b, j] = r.kv.ids[position // size] * size + position % size
        lengths = torch.tensor([r.cached + len(r.pending) for r in rows])
        reads = torch.full((len(rows), int(lengths.max())), SCRATCH * size, dtype=torch.long)
        for b, r in enumerate(rows):
            slots = (torch.tensor(r.kv.ids)[:, None] * size + torch.arange(size)).reshape(-1)
            reads[b, : int(lengths[b])] = slots[: int(lengths[b])]
        if width == 1 and self.fused is not None:
            hidden = gguf_decode.decode_hidden(self.model, self.fused, tokens[:, 0], positions[:, 0], self.kv,
                                               writes[:, 0], reads, lengths)[:, None]
        else:
            hidden = self.model.hidden_states(tokens, positions, PagedKVCache(self.kv, writes, reads, lengths,
                                                                               self.decode_kernel))
        last = torch.tensor([len(r.pending) - 1 for r in rows])
        if self.value_head is not None:
            values = self.value_head(hidden).float().tolist()
            for r, row_values in zip(rows, values):
                r.values.update((r.cached + j, row_values[j]) for j in range(len(r.pending)))
        for r in rows:
            r.cached, r.pending = r.cached + len(r.pending), ()
        return hidden[torch.arange(len(rows)), last]
