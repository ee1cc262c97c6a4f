"""What every backend that computes logits itself shares: the step loop, sampling, stops, accounting.

Work arrives as jobs (one `extend` call each, with its own sampling settings) and is done in steps:
each `step` admits what fits, finishes what stopped, and grows every running sequence of every job
by one token in one batch. `extend` submits a job and steps until it is done; a server steps one
engine for many jobs at once, so that requests share its batches (continuous batching).

A step runs two kinds of forward passes. A prefill computes each distinct context once,
however many sequences continue it (the n samples of a prompt, the children of a fork), and only the
part the backend has not cached. Decode steps then grow every running sequence by one token, all in
one batch whatever their lengths. Tokens are chosen here, from the logits, so that seeds, filters
and log-probabilities mean the same on every backend. A subclass owns the keys and values: where
they live, how a context is shared, when there is room to admit more rows.

A backend that sees its model's hidden states can carry a value head (a learned verifier on the
policy's own states): it scores every position the model computes, and each generated token's score
lands in `Sequence.values`. A row that stops is then run once more, for the state after its last
token; its keys and values are kept, so the next call on that sequence does not compute it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from ponder.engine.protocol import ModelInfo, SamplesByExtending, Sequence, Usage, check_fits
from ponder.engine.sampling import SamplingParams, find_stop, sample_with_lse
from ponder.errors import PonderError


@dataclass(eq=False)
class Job:
    """One `extend` call: its sequences and settings, what has come of them, and who wants each token."""

    sequences: list[Sequence]
    params: SamplingParams
    results: list[Sequence]
    left: int = 0  # sequences still in flight
    on_token: Callable[[int, Sequence], None] | None = None  # (index, sequence so far), after each new token
    cancelled: bool = False
    usage: Usage = field(default_factory=Usage)  # this job's share of the engine's work

    @property
    def finished(self) -> bool:
        return self.left == 0


@dataclass
class Group:
    """A context and the sequences of one job that continue it: computed once for all of them."""

    context: tuple[int, ...]
    members: list[int]  # indices into job.sequences
    job: Job

    @property
    def params(self) -> SamplingParams:
        return self.job.params


@dataclass
class Row:
    """A sequence in flight: how much of it the backend holds, what it must still compute."""

    seq: Sequence
    cached: int = 0  # tokens of seq.all_tokens whose keys and values the backend holds
    pending: tuple[int, ...] = ()  # tokens to run through the model next
    text_start: int = 0  # len(seq.text) when the call began: stop strings count from here
    budget: int = 0  # tokens this call may still add
    kv: Any = None  # the backend's handle on this row's keys and values
    values: dict[int, float] = field(default_factory=dict)  # value head scores by position, not yet in seq.values
    job: Job | None = None  # whose sequence this is (None: a context being computed for its forks)
    index: int = 0  # which of the job's sequences
    decoded: tuple[int, int] | None = None  # (prefix, read) offsets of incremental decoding (see `decode_more`)

    @property
    def stopped(self) -> bool:
        return self.seq.done or self.budget == 0 or self.seq.stop is not None


DECODE_WINDOW = 6  # tokens decoded again beside each new one: enough for any character or word-start rule


def decode_more(decode: Callable[[tuple[int, ...]], str], tokens: tuple[int, ...], prefix: int,
                read: int) -> tuple[str, tuple[int, int]]:
    """The text the last tokens add, decoding a few tokens rather than all of them (vLLM's incremental
    detokenizing): decoding every token's whole sequence again made each step cost its length. `prefix..read`
    were decoded already; the difference between decoding `prefix..` and `prefix..read` is new, unless it ends
    in a character not yet complete (U+FFFD), which waits for the next token."""
    before = decode(tokens[prefix:read])
    after = decode(tokens[prefix:])
    if len(after) > len(before) and not after.endswith("\ufffd"):
        return after[len(before):], (read, len(tokens))
    return "", (prefix, read)


class BatchedGenerator(SamplesByExtending, ABC):
    info: ModelInfo
    usage: Usage
    value_head: Callable[[Tensor], Tensor] | None = None  # hidden states [..., dim] -> scores [...]

    def __init__(self) -> None:
        self._waiting: list[Group] = []
        self._running: list[Row] = []

    def extend(self, sequences: list[Sequence], params: SamplingParams) -> list[Sequence]:
        job = self.submit(sequences, params)
        while not job.finished:
            self.step()
        return job.results

    def submit(self, sequences: list[Sequence], params: SamplingParams,
               on_token: Callable[[int, Sequence], None] | None = None) -> Job:
        """Queue a job; `step` does its work. Sequences already done come back as they are."""
        return self.enqueue(self.job(sequences, params, on_token))

    def job(self, sequences: list[Sequence], params: SamplingParams,
            on_token: Callable[[int, Sequence], None] | None = None) -> Job:
        """A checked job, not yet queued (a bad request fails here, in the caller's thread)."""
        for seq in sequences:
            self._check(seq, params)
        return Job(list(sequences), params, list(sequences), sum(not s.done for s in sequences), on_token)

    def enqueue(self, job: Job) -> Job:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, seq in enumerate(job.sequences):
            if not seq.done:
                groups.setdefault(seq.all_tokens, []).append(i)
        self._waiting += [Group(context, members, job) for context, members in groups.items()]
        return job

    def drop(self, jobs: set[Job]) -> None:
        """Forget these jobs: their waiting groups go, their running rows close (their blocks stay findable)."""
        self._waiting = [g for g in self._waiting if g.job not in jobs]
        for row in self._running:
            if row.job in jobs:
                self._close(row, keep=True)
        self._running = [row for row in self._running if row.job not in jobs]
        for job in jobs:
            job.cancelled = True

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._running)

    @torch.inference_mode()
    def step(self) -> None:
        """Admit what fits (computing its contexts), finish what stopped, then one decode step for the rest."""
        admitted, self._waiting = self._admit(self._waiting, busy=bool(self._running))
        if admitted:
            self._running += self._prefill(admitted)
        elif self._waiting and not self._running:
            raise PonderError("the engine has no room for a waiting sequence even when idle: raise its memory cap")
        running = []
        for row in self._running:
            if not row.stopped:
                running.append(row)
            elif self.value_head is not None and row.pending:
                self._charge(row.job, computed=len(row.pending))  # run for its state, not a new token
                running.append(row)
            else:
                self._close(row, keep=True)
                assert row.job is not None
                if row.decoded is not None:  # once, exactly (incremental decoding may hold back a partial character)
                    row.seq = replace(row.seq, text=self.decode(row.seq.tokens))
                row.job.results[row.index] = row.seq
                row.job.left -= 1
        self._running = running
        if running:
            logits = self._forward(running)
            for row in running:
                self._take_values(row)
            going = [i for i, row in enumerate(running) if not row.stopped]
            if len(going) < len(running):  # (indexing copies: 39 MB of logits at 64 rows, the step's peak memory)
                logits = logits[going]
            self._append_all([running[i] for i in going], logits)

    @staticmethod
    def _take_values(row: Row) -> None:
        """Move the row's newly scored positions, in order, onto its sequence's values."""
        seq, found = row.seq, []
        position = len(seq.prompt) + len(seq.values)
        while position in row.values and position < len(seq.all_tokens):
            found.append(row.values[position])
            position += 1
        row.values.clear()
        if found:
            row.seq = replace(seq, values=seq.values + tuple(found))

    def _charge(self, job: Job | None, computed: int = 0, cached: int = 0, generated: int = 0) -> None:
        """Count work on the engine's total and on the job it was done for."""
        for usage in (self.usage, job.usage) if job is not None else (self.usage,):
            usage.prompt_tokens_computed += computed
            usage.prompt_tokens_cached += cached
            usage.generated_tokens += generated

    def _check(self, seq: Sequence, params: SamplingParams) -> None:
        check_fits(self.info, seq, params)

    def _compute_contexts(self, admitted: list[Group], run: Callable[[list[Row]], Tensor]
                          ) -> tuple[list[Row], list[Tensor]]:
        """A row per group's context, its uncached part run (by `run`: logits or states) in batches of
        similar length; the rows and each one's output after its last token."""
        holders = [self._open(group.context, group.params) for group in admitted]
        for holder, group in zip(holders, admitted):
            self._charge(group.job, computed=len(holder.pending), cached=holder.cached)
        outputs: list[Tensor] = [torch.empty(0)] * len(holders)
        for batch in prefill_batches([len(h.pending) for h in holders]):
            for i, output in zip(batch, run([holders[i] for i in batch])):
                outputs[i] = output
        return holders, outputs

    def _prefill(self, admitted: list[Group]) -> list[Row]:
        """Compute each context once, then start each of its sequences from the context's last logits."""
        holders, last_logits = self._compute_contexts(admitted, self._forward)
        rows = []
        for holder, logits, group in zip(holders, last_logits, admitted):
            self._share(holder)
            forks = []
            for i in group.members:
                row = self._fork(holder, group.job.sequences[i], group.params)
                row.job, row.index = group.job, i
                row.values = dict(holder.values)
                self._take_values(row)
                row.text_start, row.budget = len(row.seq.text), group.params.max_tokens
                forks.append(row)
            self._append_all(forks, logits[None].expand(len(forks), -1))
            rows += forks
            self._close(holder, keep=False)
        return rows

    def _append_all(self, rows: list[Row], logits: Tensor) -> None:
        """Each row's next token from its logits [rows, vocab], the rows of one job drawn in one call (see
        `sample_with_lse`). A row's draw depends on its own seed alone."""
        tokens, lse = [0] * len(rows), [0.0] * len(rows)
        by_job: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_job.setdefault(id(row.job), []).append(i)
        for members in by_job.values():
            params = rows[members[0]].job.params
            seeds = [rows[i].seq.seed_for(params.seed) for i in members]
            generators = [torch.Generator().manual_seed(seed) if seed is not None else None for seed in seeds]
            part = logits if len(members) == len(rows) else logits[members]  # (a 64-row copy took 10 ms)
            chosen, sums = sample_with_lse(part, params, generators)
            for i, token, total in zip(members, chosen.tolist(), sums.tolist()):
                tokens[i], lse[i] = token, total
        for row, token, row_logits, total in zip(rows, tokens, logits, lse):
            self._append(row, token, row_logits, total)

    def _append(self, row: Row, token: int, logits: Tensor, lse: float) -> None:
        """Add the chosen token to the row (its logits' log-sum-exp `lse`); note whether it ends the call."""
        assert row.job is not None
        params = row.job.params
        self._charge(row.job, generated=1)
        row.budget -= 1
        if token in self.info.stop_ids:
            row.seq = replace(row.seq, finish_reason="stop", stop=None, done=True)
            return
        seq, tokens = row.seq, row.seq.tokens + (token,)
        if row.decoded is None:  # the text so far is the whole decode of the tokens so far
            row.decoded = (max(0, len(seq.tokens) - DECODE_WINDOW), len(seq.tokens))
        added, row.decoded = decode_more(self.decode, tokens, *row.decoded)
        text = seq.text + added
        longest = max((len(s) for s in params.stop), default=1)
        stop = find_stop(text, params.stop, max(row.text_start, len(seq.text) - longest + 1))  # only the new text
        top = seq.top_logprobs
        if params.top_logprobs:
            values, ids = logits.float().topk(params.top_logprobs)
            top += (dict(zip(ids.tolist(), (values - lse).tolist())),)
        logprob = float(logits[token]) - lse
        row.seq = replace(seq, tokens=tokens, text=text, stop=stop, logprobs=seq.logprobs + (logprob,),
                          top_logprobs=top, finish_reason="stop" if stop else "length")
        row.pending = (token,)
        if row.job.on_token is not None:
            row.job.on_token(row.index, row.seq)

    # --- what a backend provides ----------------------------------------------------------------

    @abstractmethod
    def _admit(self, waiting: list[Group], busy: bool) -> tuple[list[Group], list[Group]]:
        """The groups to start now (a group may be split) and those that wait for room."""

    @abstractmethod
    def _open(self, context: tuple[int, ...], params: SamplingParams) -> Row:
        """A row for a context, its cached part attached and the rest (at least one token) pending."""

    def _share(self, holder: Row) -> None:
        """Make a computed context available to the rows that fork from it."""

    @abstractmethod
    def _fork(self, holder: Row, seq: Sequence, params: SamplingParams) -> Row:
        """A row for `seq`, sharing the computed context of `holder`."""

    @abstractmethod
    def _forward(self, rows: list[Row]) -> Tensor:
        """Run every row's pending tokens; return the logits after each row's last one [rows, vocab]."""

    @abstractmethod
    def _close(self, row: Row, keep: bool) -> None:
        """Let go of the row's keys and values; `keep` them findable by later calls if the backend can."""


def prefill_batches(lengths: list[int], waste: float = 0.25, most: int = 4096) -> list[list[int]]:
    """Indices of contexts to compute together: similar lengths, so that padding to the longest wastes
    at most `waste` of the work, and at most `most` padded tokens a pass (prompts of 170 to 670 tokens,
    padded together, wasted 60%)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        padded = (len(batch) + 1) * lengths[i]  # sorted: the newcomer is the longest
        if batch and (padded > (1 + waste) * (sum(lengths[j] for j in batch) + lengths[i]) or padded > most):
            batches.append(batch)
            batch = []
        batch.append(i)
    return batches + [batch] if batch else batches
