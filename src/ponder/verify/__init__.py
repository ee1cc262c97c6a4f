"""Verifiers: a score for every step of a candidate (see `base`)."""

from __future__ import annotations

import functools

from ponder.engine.protocol import Generator
from ponder.errors import BadParameter
from ponder.verify.base import Verifier

VERIFIERS = ("checker", "arithmetic", "generative", "generative-outcome", "code", "prm", "orm", "prm:PATH")


def check_verifier_name(name: str) -> None:
    """Refuse an unknown verifier before anything slow (a model load) happens."""
    if name not in VERIFIERS and name.partition(":")[0] not in ("prm", "orm"):
        raise BadParameter(f"unknown verifier {name!r}: use one of {', '.join(VERIFIERS)}")


def make_verifier(name: str, judge: Generator | None = None) -> Verifier:
    """A verifier by name; the generative ones judge with `judge` (usually the policy itself), the learned
    ones (prm, orm: the heads shipped for the policy's model; prm:PATH, orm:PATH: a trained head) read its states."""
    if name == "checker":
        from ponder.verify.checker import CheckerVerifier

        return CheckerVerifier()
    if name == "arithmetic":
        from ponder.verify.steps import ArithmeticStepVerifier

        return ArithmeticStepVerifier()
    if name in ("generative", "generative-outcome"):
        from ponder.verify.generative import GenerativeVerifier

        if judge is None:
            raise BadParameter("the generative verifier needs a model to judge with")
        return GenerativeVerifier(judge, steps="all" if name == "generative" else "last")
    if name.partition(":")[0] in ("prm", "orm"):
        from ponder.prm.verifier import learned_verifier

        if judge is None:
            raise BadParameter("a learned verifier reads the policy's states: give it the policy")
        return learned_verifier(name, judge)
    if name == "code":
        from ponder.verify.code import CodeExecutionVerifier

        return CodeExecutionVerifier(tester=judge)  # the policy writes tests where a prompt shows no examples
    check_verifier_name(name)
    raise AssertionError(f"verifier {name!r} is listed but not built")


@functools.cache  # a learned verifier loads its head once a process
def shared_verifier(name: str, model: str, backend: str, shared_by_threads: bool = False) -> Verifier:
    """The verifier `name` on the process's shared engine for the model (see `engine.backends.shared_engine`): what
    the items of a long job judge with."""
    from ponder.engine.backends import shared_engine

    return make_verifier(name, shared_engine(model, backend, shared_by_threads))
