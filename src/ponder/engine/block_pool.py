"""KV cache blocks: a fixed pool with reference counts, a prefix table and LRU eviction.

As in vLLM's paged attention with automatic prefix caching: a sequence's keys and values live in
fixed-size blocks listed in its block table. A block is named by a chained hash of the tokens it
holds and of everything before them, so a sequence that starts like an earlier one (the samples of
one prompt, the children of a fork) finds those blocks in the table and reuses them. The last
block of a sequence may be partly filled; a sequence writes only into blocks no one else holds
(copy-on-write). Blocks nobody holds stay in the table until the pool needs room.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

ROOT = b"ponder"
SCRATCH = 0  # block 0 is never handed out: padding positions write there


class CacheFull(Exception):
    """Not enough free blocks for this allocation right now."""


def block_key(parent: bytes, tokens: Sequence[int]) -> bytes:
    data = parent + b"".join(t.to_bytes(4, "little") for t in tokens)
    return hashlib.blake2b(data, digest_size=16).digest()


class BlockPool:
    def __init__(self, n_blocks: int, block_size: int):
        if n_blocks < 2:
            raise ValueError(f"the KV cache needs at least 2 blocks, not {n_blocks}: raise its memory cap")
        self.n_blocks, self.block_size = n_blocks, block_size
        self.refs = [0] * n_blocks
        self.free = list(range(n_blocks - 1, SCRATCH, -1))  # pop() hands out low ids first
        self.table: dict[bytes, int] = {}  # key -> block
        self.key_of: dict[int, bytes] = {}  # block -> key, for blocks in the table
        self.idle: OrderedDict[int, None] = OrderedDict()  # in the table, held by nobody: evictable, oldest first
        self.peak_held = 0  # most blocks held at once: for memory reports

    @property
    def available(self) -> int:
        return len(self.free) + len(self.idle)

    def allocate(self) -> int:
        if self.free:
            block = self.free.pop()
        elif self.idle:
            block, _ = self.idle.popitem(last=False)  # evict the least recently used cached block
            del self.table[self.key_of.pop(block)]
        else:
            raise CacheFull("no free KV cache block")
        self.refs[block] = 1
        self.peak_held = max(self.peak_held, self.n_blocks - 1 - self.available)
        return block

    def hold(self, block: int) -> None:
        if self.refs[block] == 0:
            self.idle.pop(block, None)
        self.refs[block] += 1

    def release(self, block: int) -> None:
        self.refs[block] -= 1
        if self.refs[block] == 0:
            if block in self.key_of:
                self.idle[block] = None
            else:
                self.free.append(block)

    def is_private(self, block: int) -> bool:
        """Only one holder and not in the table: safe to write into."""
        return self.refs[block] == 1 and block not in self.key_of

    def register(self, key: bytes, block: int) -> None:
        """Put a block holding known tokens in the table (unless an identical one is there)."""
        if key not in self.table and block not in self.key_of:
            self.table[key] = block
            self.key_of[block] = key

    def match(self, tokens: Sequence[int]) -> tuple[list[int], int]:
        """The longest cached prefix of `tokens`: its blocks (now held by the caller) and its length."""
        blocks, n, key, size = [], 0, ROOT, self.block_size
        while n < len(tokens):
            for m in range(min(size, len(tokens) - n), 0, -1):  # a full block, else the longest partial one
                candidate = block_key(key, tokens[n:n + m])
                if (block := self.table.get(candidate)) is not None:
                    self.hold(block)
                    blocks.append(block)
                    n, key = n + m, candidate
                    break
            else:
                break
            if m < size:  # a partial block ends a chain
                break
        return blocks, n

    def register_all(self, tokens: Sequence[int], blocks: Sequence[int]) -> None:
        """Name every block of a sequence by the tokens it holds (the last may be partial)."""
        key = ROOT
        for i, block in enumerate(blocks):
            chunk = tokens[i * self.block_size:(i + 1) * self.block_size]
            if not chunk:
                break
            key = block_key(key, chunk)
            self.register(key, block)
