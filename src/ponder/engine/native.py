"""The native backend: ponder's own model, batched, with a paged KV cache that shares prefixes.

One call (`extend`) runs two kinds of forward passes. A prefill computes each distinct context once,
however many sequences continue it (the n samples of a prompt, the children of a fork), and only the
part that no cached block holds. Decode steps then grow every running sequence by one token, all in
one batch whatever their lengths. A sequence starts only when the pool can hold its worst case;
otherwise it waits for others to finish, and one that could never fit is refused with a clear error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ponder.engine.block_pool import SCRATCH, BlockPool
from ponder.engine.paged_cache import KVPool, PagedKVCache
from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.engine.sampling import SamplingParams, find_stop, sample
from ponder.errors import BadParameter
from ponder.models.loader import LoadedModel

DEFAULT_CACHE_BYTES = 1 << 30
Group = tuple[tuple[int, ...], list[int]]  # a context and the indices of the sequences that continue it


@dataclass
class _Row:
    """A sequence being grown in this call: its blocks and the tokens whose KV is not in them yet."""

    seq: Sequence
    blocks: list[int]
    cached: int  # tokens of seq.all_tokens whose keys and values are in `blocks`
    reserved: int  # blocks still promised to this row
    text_start: int = 0  # len(seq.text) when the call began: stop strings count from here
    budget: int = 0  # tokens this call may still add
    pending: tuple[int, ...] = ()

    @property
    def stopped(self) -> bool:
        return self.seq.done or self.budget == 0 or self.seq.stop is not None


class NativeEngine:
    def __init__(self, loaded: LoadedModel, cache_bytes: int = DEFAULT_CACHE_BYTES, block_size: int = 16,
                 dtype: torch.dtype = torch.float32, name: str = "native"):
        self.model, self.tokenizer = loaded.model.to(dtype), loaded.tokenizer
        cfg = self.model.cfg
        self.blocks = BlockPool(cache_bytes // KVPool.bytes_per_block(cfg, block_size, dtype), block_size)
        self.kv = KVPool(cfg, self.blocks.n_blocks, block_size, dtype)
        self.info = ModelInfo(name, cfg.n_params, cfg.max_seq_len, loaded.tokenizer.stop_ids)
        self.usage = Usage()
        self.promised = 0  # blocks reserved for rows in flight, not yet allocated

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    # --- the protocol ---------------------------------------------------------------------------

    def sample(self, prompts: list[list[int]], n: int, params: SamplingParams) -> list[list[Sequence]]:
        if n < 1:
            raise BadParameter(f"n must be at least 1, not {n}")
        roots = [Sequence(tuple(p)) for p in prompts]  # seeds depend on the prompt, not its place in the batch
        done = iter(self.extend([child for root in roots for child in root.fork(n)], params))
        return [[next(done) for _ in range(n)] for _ in prompts]

    @torch.inference_mode()
    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        for seq in sequences:
            self._check_fits(seq, params)
        results = list(sequences)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, seq in enumerate(sequences):
            if not seq.done:
                groups.setdefault(seq.all_tokens, []).append(i)
        waiting: list[Group] = list(groups.items())
        running: dict[int, _Row] = {}
        while waiting or running:
            admitted, waiting = self._admit(waiting, params, busy=bool(running))
            if admitted:
                running |= self._prefill(admitted, sequences, params)
            for i in [i for i, row in running.items() if row.stopped]:
                results[i] = self._retire(running.pop(i))
            if running:
                rows = list(running.values())
                for row, logits in zip(rows, self._forward(rows)):
                    self._append(row, logits, params)
        return results

    # --- admission ----------------------------------------------------------------------------

    def _check_fits(self, seq: Sequence, params: SamplingParams) -> None:
        if not seq.all_tokens:
            raise BadParameter("a sequence needs at least one prompt token")
        if len(seq.all_tokens) + params.max_tokens > self.info.context_length:
            raise BadParameter(
                f"max_tokens {params.max_tokens} after {len(seq.all_tokens)} tokens passes the context window "
                f"of {self.info.context_length}: lower max_tokens or shorten the prompt")
        if 2 * self._worst_case(len(seq.all_tokens), params) > self.blocks.n_blocks - 1:
            raise BadParameter(
                f"a sequence of {len(seq.all_tokens)} + {params.max_tokens} tokens needs more than the KV cache "
                f"holds ({self.blocks.n_blocks - 1} blocks of {self.blocks.block_size}): raise its memory cap")

    def _worst_case(self, context: int, params: SamplingParams) -> int:
        return math.ceil((context + params.max_tokens) / self.blocks.block_size) + 1

    def _admit(self, waiting: list[Group], params: SamplingParams, busy: bool) -> tuple[list[Group], list[Group]]:
        """Groups, in order, whose worst case fits beside what is promised; a group may be split."""
        room = self.blocks.available - self.promised
        admitted: list[Group] = []
        for k, (context, members) in enumerate(waiting):
            each = self._worst_case(len(context), params)
            fit = min(len(members), room // each - 1)  # one more worst case for computing the context
            if fit < len(members) and (fit < 1 or busy or admitted):
                if fit >= 1:
                    return admitted + [(context, members[:fit])], [(context, members[fit:])] + waiting[k + 1:]
                return admitted, waiting[k:]
            admitted.append((context, members))
            room -= each * (len(members) + 1)
        return admitted, []

    # --- forward passes ------------------------------------------------------------------------

    def _prefill(self, admitted: list[Group], sequences: list[Sequence], params: SamplingParams) -> dict[int, _Row]:
        """Compute each context once, then start each of its sequences from the context's last logits."""
        holders = []
        for context, _ in admitted:
            blocks, cached = self.blocks.match(context)
            cached = min(cached, len(context) - 1)  # all cached: recompute the last token for its logits
            holders.append(self._row(Sequence(context), blocks, cached, params))
            holders[-1].pending = context[cached:]
            self.usage.prompt_tokens_cached += cached
            self.usage.prompt_tokens_computed += len(context) - cached
        rows = {}
        for holder, logits, (context, members) in zip(holders, self._forward(holders), admitted):
            self.blocks.register_all(context, holder.blocks)
            for i in members:
                blocks, cached = self.blocks.match(context)  # the holder's blocks, now shared
                row = self._row(sequences[i], blocks, cached, params)
                self._append(row, logits, params)
                rows[i] = row
            self._release(holder)
        return rows

    def _row(self, seq: Sequence, blocks: list[int], cached: int, params: SamplingParams) -> _Row:
        reserved = self._worst_case(len(seq.all_tokens), params)
        self.promised += reserved
        return _Row(seq, blocks, cached, reserved, len(seq.text), params.max_tokens)

    def _forward(self, rows: list[_Row]) -> Tensor:
        """Run every row's pending tokens in one padded batch; return the logits after each row's last one."""
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
                writes[b, j] = r.blocks[position // size] * size + position % size
        lengths = torch.tensor([r.cached + len(r.pending) for r in rows])
        reads = torch.full((len(rows), int(lengths.max())), SCRATCH * size, dtype=torch.long)
        for b, r in enumerate(rows):
            slots = (torch.tensor(r.blocks)[:, None] * size + torch.arange(size)).reshape(-1)
            reads[b, : int(lengths[b])] = slots[: int(lengths[b])]
        hidden = self.model.hidden_states(tokens, positions, PagedKVCache(self.kv, writes, reads, lengths))
        last = torch.tensor([len(r.pending) - 1 for r in rows])
        for r in rows:
            r.cached, r.pending = r.cached + len(r.pending), ()
        return self.model.head(hidden[torch.arange(len(rows)), last]).float()

    def _make_writable(self, r: _Row, index: int) -> None:
        """A fresh block past the end; a private copy of a shared block before writing into it."""
        if index == len(r.blocks):
            r.blocks.append(self.blocks.allocate())
        elif not self.blocks.is_private(r.blocks[index]):
            fresh = self.blocks.allocate()
            self.kv.copy_block(r.blocks[index], fresh)
            self.blocks.release(r.blocks[index])
            r.blocks[index] = fresh
        else:
            return
        r.reserved -= 1
        self.promised -= 1

    # --- tokens, stops, bookkeeping -------------------------------------------------------------

    def _append(self, r: _Row, logits: Tensor, params: SamplingParams) -> None:
        seed = r.seq.seed_for(params.seed)
        token = int(sample(logits[None], params, [torch.Generator().manual_seed(seed) if seed is not None else None]))
        self.usage.generated_tokens += 1
        r.budget -= 1
        if token in self.info.stop_ids:
            r.seq = replace(r.seq, finish_reason="stop", stop=None, done=True)
            return
        seq, tokens = r.seq, r.seq.tokens + (token,)
        text = self.tokenizer.decode(tokens)
        stop = find_stop(text, params.stop, r.text_start)
        r.seq = replace(seq, tokens=tokens, text=text, stop=stop,
                        logprobs=seq.logprobs + (float(torch.log_softmax(logits, -1)[token]),),
                        finish_reason="stop" if stop else "length")
        r.pending = (token,)

    def _retire(self, r: _Row) -> Sequence:
        """Name the row's blocks for later calls to find, and let go of them."""
        self.blocks.register_all(r.seq.all_tokens[: r.cached], r.blocks)
        self._release(r)
        return r.seq

    def _release(self, r: _Row) -> None:
        for block in r.blocks:
            self.blocks.release(block)
        self.promised -= r.reserved
        r.blocks, r.reserved = [], 0
