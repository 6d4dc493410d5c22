"""How the training configuration reports its problems: each check appends a message, none raises early.

The sections (`mtu.training.sections`), the tasks (`mtu.training.task_config`) and `TrainConfig` collect
every problem of a config this way, and `raise_problems` turns them into one error.
"""

from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def need(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def choice(problems: list[str], name: str, value: Any, options: tuple[str, ...]) -> None:
    need(problems, value in options, f"{name}: {value!r} is not one of {list(options)}")


def int_at_least(problems: list[str], name: str, value: Any, low: int) -> None:
    need(problems, is_int(value) and value >= low, f"{name}: must be an int >= {low}, got {value!r}")


def raise_problems(found: list[str]) -> None:
    """One ValueError, on one line, numbering every problem."""
    if found:
        listed = "; ".join(f"({i}) {problem}" for i, problem in enumerate(found, 1))
        raise ValueError(f"invalid training config, {len(found)} problem{'s' * (len(found) > 1)}: {listed}")
