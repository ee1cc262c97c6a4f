"""The policy's hidden states at step ends: what a value head reads, stored compactly with the labels.

States are taken from the engine that generates (`NativeEngine.states`), on the same weights and
path as at search time; right after a question is labelled its solutions are still in the prefix
cache, so each step's state costs about one token. They are kept as float16, base64 in the run
store: about 1.8 kB a step for the 0.5B model.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ponder.errors import BadParameter


def encode_states(states: Tensor) -> str:
    return base64.b64encode(states.to(torch.float16).numpy().tobytes()).decode()


def decode_states(text: str, dim: int) -> Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.float16).copy()).float().view(-1, dim)


def step_states(engine: Any, prompt: tuple[int, ...], tokens: tuple[int, ...], ends: list[int]) -> Tensor:
    """States [len(ends), dim] after each step end (token indices into `tokens`)."""
    # The whole sequence first: then every step's prefix is cached but for its last partial block. Asked
    # for together on a cold cache, the prefixes would each be computed in full, in one batch (3.3x the
    # tokens for 16 gsm_symbolic samples); on a warm one this costs a partial block.
    engine.states([prompt + tokens])
    return engine.states([prompt + tokens[: end + 1] for end in ends])


def fill_states(results: Iterable[dict[str, Any]], engine: Any) -> int:
    """Add the states of samples labelled without them (by a backend that does not expose them, as
    vLLM) with a native engine on the same weights: one pass over each sample. Returns how many."""
    filled = 0
    for result in results:
        for sample in result["samples"]:
            if sample.get("step_ends") and "states" not in sample:
                states = step_states(engine, tuple(result["prompt"]), tuple(sample["tokens"]), sample["step_ends"])
                sample["states"], filled = encode_states(states), filled + 1
    return filled


def fill_missing_states(results: list[dict[str, Any]], loaded: Any, name: str) -> int:
    """`fill_states` on the engine that generates (the int8 fast path), made only if some sample lacks
    its states: labelled on vLLM, or restored from a snapshot that leaves them out (evidence/)."""
    if not any(s.get("step_ends") and "states" not in s for r in results for s in r["samples"]):
        return 0
    from ponder.engine.native import NativeEngine

    return fill_states(results, NativeEngine(loaded, int8=True, name=name))


def training_rows(results: Iterable[dict[str, Any]], kind: str, dim: int) -> tuple[Tensor, Tensor, list[str]]:
    """(features, labels, question of each row) from labelled questions: every step with its Monte Carlo
    label for a process model ("prm"), the last step with the solution's correctness for an outcome model ("orm")."""
    if kind not in ("prm", "orm"):
        raise BadParameter(f"kind must be 'prm' or 'orm', not {kind!r}")
    features, labels, groups = [], [], []
    for result in results:
        for sample in result["samples"]:
            if not sample["step_ends"]:
                continue
            if "states" not in sample:
                raise BadParameter(f"question {result['id']} was labelled without states (a backend that does not "
                                   "expose them): label again with the native backend")
            states = decode_states(sample["states"], dim)
            if kind == "prm":
                features.append(states)
                labels += sample["labels"]
            else:
                features.append(states[-1:])
                labels.append(float(sample["correct"]))
            groups += [result["id"]] * (len(states) if kind == "prm" else 1)
    if not features:
        raise BadParameter("no labelled steps to train on: run `ponder prm label` first")
    return torch.cat(features), torch.tensor(labels), groups
