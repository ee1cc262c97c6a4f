"""The llama.cpp backend: many sequences decoded together through its batch API.

llama.cpp keeps every sequence's keys and values in one unified cache, tagged by sequence id;
`llama_memory_seq_cp` makes a new sequence share an existing one's cells without copying them.
So a context is computed once and each sample or child starts as a copy of it; and a sequence
kept from an earlier call lends its longest common prefix to the next one (what a beam search
step needs). Tokens are chosen by ponder (see `batched`), so seeds and filters match the native
backend; llama.cpp computes the logits.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ponder.engine.batched import BatchedGenerator, Group, Row
from ponder.engine.protocol import ModelInfo, Sequence, Usage
from ponder.engine.sampling import SamplingParams
from ponder.errors import BadParameter, PonderError
from ponder.models.gguf import metadata, open_gguf
from ponder.models.tokenizer import Tokenizer


class LlamaCppEngine(BatchedGenerator):
    def __init__(self, model_path: str | Path, n_ctx: int = 8192, n_seq_max: int = 64, n_threads: int = 2,
                 n_batch: int = 512, name: str = "llama.cpp"):
        super().__init__()
        try:
            import llama_cpp
        except ImportError:
            raise PonderError("the llama.cpp backend needs llama-cpp-python: pip install 'ponder[llamacpp]'") from None
        self.lib, self.path = llama_cpp, Path(model_path)
        # A Llama object loads the model and tokenizer; ponder makes its own multi-sequence context.
        self.llm = llama_cpp.Llama(str(model_path), n_ctx=32, n_threads=n_threads, verbose=False)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max, params.kv_unified = n_seq_max, True
        params.n_threads = params.n_threads_batch = n_threads
        self.ctx = llama_cpp.llama_init_from_model(self.llm.model, params)
        if not self.ctx:
            raise PonderError(f"llama.cpp could not make a context of {n_ctx} tokens: lower n_ctx")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        stop_ids = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        n_params = int(llama_cpp.llama_model_n_params(self.llm.model))
        self.info = ModelInfo(name, n_params, min(n_ctx, llama_cpp.llama_model_n_ctx_train(self.llm.model)), stop_ids)
        self.usage = Usage()
        self.n_batch, self.n_ctx = n_batch, n_ctx
        self.free_ids = list(range(n_seq_max - 1, -1, -1))
        self.kept: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # finished rows' sequences, oldest first
        self.live: dict[int, tuple[int, ...]] = {}  # sequence id -> tokens in the cache, for rows in flight

    def encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=self.llm._model.add_bos_token(), special=True)

    def decode(self, tokens: tuple[int, ...]) -> str:
        return self.llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        """ponder's tokenizer from the same file: for chat templates (its tokens equal llama.cpp's, tested)."""
        return Tokenizer.from_gguf(metadata(open_gguf(self.path)))

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_free(self.ctx)
            self.ctx = None

    # --- admission: cells of the unified cache and sequence ids --------------------------------

    def _used(self) -> int:
        """Cells in use, counting shared prefixes more than once: an upper bound."""
        return sum(len(t) for t in self.live.values()) + sum(len(t) for t in self.kept.values())

    def _admit(self, waiting: list[Group], busy: bool) -> tuple[list[Group], list[Group]]:
        admitted: list[Group] = []
        room, ids = self.n_ctx - self._used(), len(self.free_ids)
        for k, group in enumerate(waiting):
            context, members, params = group.context, group.members, group.params
            each = params.max_tokens + 1
            while self.kept and (room < len(context) + len(members) * each or ids < len(members) + 1):
                room, ids = room + len(self.kept[next(iter(self.kept))]), ids + 1
                self._drop(next(iter(self.kept)))  # evict the oldest kept sequence
            fit = min(len(members), (room - len(context)) // each, ids - 1)
            if fit < len(members):
                if fit >= 1:
                    return (admitted + [replace(group, members=members[:fit])],
                            [replace(group, members=members[fit:])] + waiting[k + 1:])
                if busy or admitted:
                    return admitted, waiting[k:]
                raise BadParameter(f"{len(context)} + {params.max_tokens} tokens do not fit llama.cpp's context of "
                                   f"{self.n_ctx} tokens: raise n_ctx or lower max_tokens")
            admitted.append(group)
            room, ids = room - len(context) - len(members) * each, ids - len(members) - 1
        return admitted, []

    # --- rows as llama.cpp sequences ------------------------------------------------------------

    def _new_sequence(self, source: int | None, length: int) -> int:
        seq_id = self.free_ids.pop()
        if source is not None and length > 0:
            self.lib.llama_memory_seq_cp(self.memory, source, seq_id, 0, length)
        return seq_id

    def _drop(self, seq_id: int) -> None:
        self.lib.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
        self.kept.pop(seq_id, None)
        self.live.pop(seq_id, None)
        self.free_ids.append(seq_id)

    def _open(self, context: tuple[int, ...], params: SamplingParams) -> Row:
        best, common = None, 0
        for seq_id, tokens in list(self.kept.items()) + list(self.live.items()):
            n = _common_prefix(tokens, context)
            if n > common:
                best, common = seq_id, n
        cached = min(common, len(context) - 1)  # at least one token to compute, for its logits
        seq_id = self._new_sequence(best, cached)
        if best is not None and best in self.kept:
            self.kept.move_to_end(best)
        self.live[seq_id] = context[:cached]
        return Row(Sequence(context), cached=cached, pending=context[cached:], kv=seq_id)

    def _fork(self, holder: Row, seq: Sequence, params: SamplingParams) -> Row:
        seq_id = self._new_sequence(holder.kv, holder.cached)
        self.live[seq_id] = seq.all_tokens[: holder.cached]
        return Row(seq, cached=holder.cached, kv=seq_id)

    def _close(self, row: Row, keep: bool) -> None:
        if keep:
            self.kept[row.kv] = self.live.pop(row.kv)
        else:
            self._drop(row.kv)

    def _forward(self, rows: list[Row]) -> Tensor:
        work = [(r, j) for r in rows for j in range(len(r.pending))]
        logits = {}
        for start in range(0, len(work), self.n_batch):
            chunk = work[start:start + self.n_batch]
            batch = self.lib.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, (r, j) in enumerate(chunk):
                    batch.token[i], batch.pos[i] = r.pending[j], r.cached + j
                    batch.n_seq_id[i], batch.seq_id[i][0] = 1, r.kv
                    batch.logits[i] = j == len(r.pending) - 1
                batch.n_tokens = len(chunk)
                if (status := self.lib.llama_decode(self.ctx, batch)) != 0:
                    raise PonderError(f"llama.cpp could not decode (status {status}): its KV cache may be full; "
                                      "raise n_ctx")
                for i, (r, j) in enumerate(chunk):
                    if j == len(r.pending) - 1:
                        pointer = self.lib.llama_get_logits_ith(self.ctx, i)
                        logits[id(r)] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
            finally:
                self.lib.llama_batch_free(batch)
        for r in rows:
            self.live[r.kv] = self.live[r.kv] + r.pending
            r.cached, r.pending = r.cached + len(r.pending), ()
        return torch.from_numpy(np.stack([logits[id(r)] for r in rows]))


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
