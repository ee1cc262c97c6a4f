"""A trained value head as a `Verifier`: a process (every step) or outcome (the final state) model.

When the policy is a native engine on the head's own model, the head rides along on the engine
(`value_head`) and scores every state as it is computed, so a candidate's step scores are read off
`Sequence.values` at its step ends: no second pass. Otherwise (another backend, values missing)
the states are computed in a separate pass on the backbone, which is charged to the budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ponder.budget import Budget
from ponder.engine.protocol import Sequence
from ponder.errors import BadParameter
from ponder.prm.features import step_states
from ponder.prm.head import ValueHead, load_head
from ponder.tasks.base import Task
from ponder.verify.base import split_steps, step_token_ends


class LearnedVerifier:
    def __init__(self, head: ValueHead, backbone: Any, kind: str = "prm", ride_along: bool = True):
        """backbone: a NativeEngine on the head's model (the policy itself, or a copy beside another backend).
        ride_along: attach the head to the backbone so that generation scores every token as it goes."""
        self.head, self.backbone, self.kind, self.name = head, backbone, kind, kind
        self.read = head.probability  # one bound method: the engine's value head is this very object
        if ride_along:
            backbone.value_head = self.read
        self.separate_pass_tokens = 0  # tokens the backbone computed for scoring alone

    @classmethod
    def load(cls, path: Path, backbone: Any, ride_along: bool = True) -> LearnedVerifier:
        head, card = load_head(path, backbone.model)
        return cls(head, backbone, card.get("kind", "prm"), ride_along)

    @torch.inference_mode()
    def score(self, task: Task, candidates: list[Sequence], budget: Budget) -> list[list[float]]:
        out = []
        for c in candidates:
            steps = len(split_steps(c.text))
            ends = step_token_ends(self.backbone.decode, c.tokens)
            if not ends:  # nothing generated: no evidence either way
                out.append([0.5] * steps)
                continue
            if self.kind == "orm":
                ends = ends[-1:]
            if self.backbone.value_head is self.read and len(c.values) == len(c.tokens):
                scores = [c.values[e] for e in ends]  # computed while generating
            else:
                before = self.backbone.usage.prompt_tokens_computed
                scores = self.read(step_states(self.backbone, c.prompt, c.tokens, ends)).tolist()
                spent = self.backbone.usage.prompt_tokens_computed - before
                self.separate_pass_tokens += spent
                budget.charge_verifier(spent, self.backbone.info.n_params)
            out.append(scores * steps if self.kind == "orm" else scores)
        return out


HEADS = Path(__file__).parent / "heads"  # heads shipped for registry models: MODEL.KIND.safetensors


def learned_verifier(spec: str, policy: Any) -> LearnedVerifier:
    """"prm" or "orm" (the head shipped for the policy's model), or "prm:PATH"; on a native policy the head
    rides along, on another backend it scores in a separate pass on a native copy of the model."""
    from ponder.engine.backends import shared_generator

    native = hasattr(policy, "states")
    backbone = policy if native else shared_generator(policy.info.name, "native")
    return LearnedVerifier.load(head_path(spec, policy.info.name), backbone, ride_along=native)


def head_path(spec: str, model: str) -> Path:
    """The head a learned verifier's name means: "prm:PATH" that file, "prm" or "orm" the one shipped for `model`."""
    kind, _, path = spec.partition(":")
    head = Path(path) if path else HEADS / f"{model}.{kind}.safetensors"
    if not path and not head.is_file():
        shipped = ", ".join(sorted(p.name.split(".")[0] for p in HEADS.glob(f"*.{kind}.safetensors"))) or "none"
        raise BadParameter(f"no {kind} head ships for {model} (heads ship for: {shipped}): "
                           f"train one with `ponder prm train` and pass --verifier {kind}:PATH")
    return head
