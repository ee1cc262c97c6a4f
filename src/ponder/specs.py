"""`name:key=value,key=value` specs, as task sets and strategy variants are written on the command line."""

from __future__ import annotations

from typing import Any

from ponder.errors import BadParameter


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """ "beam:width=2,max_steps=8" -> ("beam", {"width": 2, "max_steps": 8}): ints, floats and true/false
    become values."""
    name, _, settings = spec.partition(":")
    parsed: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in settings.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key:
            raise BadParameter(f"bad setting {item!r} in {spec!r}: write name:key=value,key=value")
        parsed[key] = _value(value)
    return name.strip(), parsed


def split_specs(text: str) -> tuple[str, ...]:
    """A comma-separated list of specs: "greedy,beam:width=2,max_steps=8,majority" holds three (a part with
    "=" and no ":" is a further setting of the spec before it)."""
    specs: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" in part and ":" not in part and specs:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return tuple(specs)


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
