"""Imports point down the layers (DESIGN.md): a package never imports one above it, even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import ponder

SOURCE = Path(ponder.__file__).parent
LAYERS = [  # bottom first; a unit may import its own layer and those below
    {"errors"}, {"specs", "stats", "sandbox", "jobs", "sandbox_boot", "progress"}, {"models"}, {"engine", "vision"}, {"budget", "tasks"},
    {"verify"}, {"search", "prm"}, {"journey"}, {"eval", "train", "demo", "serve"}, {"cli"},
]
# The one lazy import still pointing up: make_verifier("prm") builds the learned verifier, whose head and states
# live with the PRM's training (prm/), which itself reads search's selection functions.
KNOWN = {("verify", "prm")}


def unit(path: Path) -> str:
    return path.relative_to(SOURCE).parts[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {name.split(".")[1] for name in names if name.startswith("ponder.")}
    return found


def test_every_import_points_down_the_layers() -> None:
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = []
    for path in SOURCE.rglob("*.py"):
        if unit(path) == "__init__":
            continue
        me = unit(path)
        assert me in rank, f"{me} is in no layer: add it to LAYERS"
        for other in imports(path) - {me}:
            if rank[other] > rank[me] and (me, other) not in KNOWN:
                upward.append(f"{path.relative_to(SOURCE)} imports ponder.{other}")
    assert not upward, upward
