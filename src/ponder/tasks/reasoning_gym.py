"""Tasks from any reasoning-gym dataset, scored by the dataset's own scorer.

A task keeps its entry and the dataset's name and settings, not the dataset: tasks must pickle, and
the scorer is rebuilt on first use in each process (cached by name and settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ponder.errors import BadParameter
from ponder.tasks.answers import extract_answer, math_messages
from ponder.tasks.base import Task

if TYPE_CHECKING:
    from reasoning_gym.dataset import ProceduralDataset

logger = logging.getLogger(__name__)

FIND_NAMES = 'python -c "import reasoning_gym.factory as f; print(*sorted(f.DATASETS))"'

Settings = tuple[tuple[str, Any], ...]  # create_dataset's keyword arguments, hashable


@dataclass(frozen=True)
class ReasoningGymTask(Task):
    dataset: str = field(kw_only=True)  # the reasoning-gym name, e.g. "chain_sum"
    settings: Settings = field(kw_only=True)  # everything create_dataset was given, size and seed included
    entry: dict[str, Any] = field(kw_only=True)  # the dataset's entry, as its scorer expects it

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def check(self, answer: str | None) -> bool:
        if answer is None:
            return False
        try:
            score = _dataset(self.dataset, self.settings).score_answer(answer, self.entry)
        except Exception:  # a scorer that chokes on a malformed answer has not been given a right one
            logger.debug("%s: the %s scorer failed on %r", self.id, self.dataset, answer, exc_info=True)
            return False
        return score == 1.0  # partial credit (e.g. for a number inside a longer answer) is not correct


def reasoning_gym_names() -> list[str]:
    return sorted(_registry())


def load_reasoning_gym(name: str, size: int, seed: int, **config: Any) -> list[ReasoningGymTask]:
    """`size` tasks of dataset `name` with config fields `config`. A knob "X" given where the config
    has min_X and max_X sets both ("terms=3" is min_terms=max_terms=3)."""
    if name not in _registry():
        close = difflib.get_close_matches(name, _registry(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise BadParameter(f"unknown reasoning-gym dataset {name!r}{hint}: list the names with {FIND_NAMES}")
    if size < 1:
        raise BadParameter(f"size must be at least 1, not {size}")
    kwargs = {**_expand_knobs(name, config), "size": size, "seed": seed}
    settings = tuple(sorted((key, _hashable(value)) for key, value in kwargs.items()))
    try:
        dataset = _dataset(name, settings)
    except (AssertionError, TypeError, ValueError) as e:
        raise BadParameter(f"bad settings for {name} {config}: {str(e) or 'rejected by its validation'}") from e
    label = name + (":" + ",".join(f"{k}={v}" for k, v in config.items()) if config else "")
    tasks = [_task(f"{label}/{i}", name, settings, dataset[i]) for i in range(size)]
    if templates := getattr(dataset, "task_indices", None):  # gsm_symbolic: the template each question came from
        tasks = [replace(t, metadata=t.metadata | {"template": int(templates[i])}) for i, t in enumerate(tasks)]
    return tasks


def chain_sum_ladder(levels: list[tuple[int, int]], per_level: int, seed: int) -> list[ReasoningGymTask]:
    """`chain_sum` questions of exactly (terms, digits) for each level, `per_level` each: a difficulty ladder."""
    tasks: list[ReasoningGymTask] = []
    for terms, digits in levels:
        # Each level gets its own seed: with one seed for all, item i of every level would draw from the
        # same random stream and the levels would share their operators and digits.
        level_seed = random.Random(f"{seed}/{terms}x{digits}").randrange(2**32)
        tasks += load_reasoning_gym("chain_sum", per_level, level_seed, terms=terms, digits=digits)
    return tasks


def _registry() -> dict[str, tuple[type, type]]:
    """reasoning-gym's datasets by name: (dataset class, config class)."""
    # Imported on first use: importing reasoning-gym builds all its datasets' modules (about 2 s),
    # which every importer of ponder.tasks.base would otherwise pay.
    from reasoning_gym.factory import DATASETS

    return DATASETS


@functools.lru_cache(maxsize=64)
def _dataset(name: str, settings: Settings) -> ProceduralDataset:
    from reasoning_gym import create_dataset

    return create_dataset(name, **dict(settings))


def _task(task_id: str, name: str, settings: Settings, entry: dict[str, Any]) -> ReasoningGymTask:
    metadata = dict(entry.get("metadata", {}))
    if (cot := metadata.pop("answer_cot", None)) is not None:  # gsm_symbolic's worked solution
        metadata["reference_cot"] = cot
    answer = entry.get("answer")
    return ReasoningGymTask(
        id=task_id,
        messages=math_messages(entry["question"]),
        reference="" if answer is None else str(answer),  # None: datasets that accept many answers
        difficulty=_difficulty(metadata),
        metadata=metadata,
        dataset=name,
        settings=settings,
        entry=entry,
    )


def _difficulty(metadata: dict[str, Any]) -> dict[str, Any]:
    """This entry's own values of the knobs its dataset varies (chain_sum: num_terms, num_digits).

    reasoning-gym lists the knobs in metadata["difficulty"] with the configured ranges, and most
    datasets record the value each entry drew under the same key at the top of its metadata.
    """
    knobs = metadata.get("difficulty")
    if not isinstance(knobs, dict):
        return {}
    return {
        k: metadata[k]
        for k in knobs
        if isinstance(metadata.get(k), (int, float)) and not isinstance(metadata[k], bool)
    }


def _expand_knobs(name: str, config: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(_registry()[name][1])}
    expanded: dict[str, Any] = {}
    for key, value in config.items():
        if key not in fields and {f"min_{key}", f"max_{key}"} <= fields:
            expanded[f"min_{key}"] = expanded[f"max_{key}"] = value
        elif key in fields - {"size", "seed"}:
            expanded[key] = value
        else:
            settable = sorted(fields - {"size", "seed"})
            raise BadParameter(f"{name} has no setting {key!r}: use one of {', '.join(settable)}")
    return expanded


def _hashable(value: Any) -> Any:
    """Lists as tuples, so that settings can key the dataset cache."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
