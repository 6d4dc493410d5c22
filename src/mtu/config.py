"""Configuration of a Multi-Task Upcycled model: which tasks, how many experts, what to target.

`MTUConfig` round-trips through JSON (`save`/`load`) and is stored beside the MTU weights by
`MTUModel.save_pretrained`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_NAME = "mtu_config.json"


@dataclass(frozen=True)
class TaskSpec:
    """A task is data: its name and how many conditioning channels it adds to the denoiser input.

    Args:
        name: identifier used in `model(..., task=name)`.
        extra_channels: latent channels concatenated after the noisy latent (0 for text-to-image).
        description: one line for humans (reports, `mtu info`).
    """

    name: str
    extra_channels: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"task name {self.name!r} must be a Python identifier such as 'edit' or 'depth2img'")
        if not isinstance(self.extra_channels, int) or self.extra_channels < 0:
            raise ValueError(f"task {self.name!r}: extra_channels must be an int >= 0, got {self.extra_channels!r}")


# DESIGN.md section 3: the built-in tasks and their conditioning layouts.
BUILTIN_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("t2i", 0, "text-to-image: the base model's own task"),
        TaskSpec("edit", 4, "instruction editing: InstructPix2Pix layout (image latent)"),
        TaskSpec("sr", 4, "super-resolution: latent of the low-res image resized to the output size"),
        TaskSpec("remove", 4, "object removal from an instruction, no mask (the paper's inpainting task)"),
        TaskSpec("inpaint", 5, "mask-based inpainting: SD-inpainting layout (mask + masked-image latent)"),
    )
}


def _as_task_spec(task: TaskSpec | str | dict) -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        if task not in BUILTIN_TASKS:
            raise ValueError(
                f"unknown task {task!r}; built-in tasks are {sorted(BUILTIN_TASKS)}. Declare your own as "
                f"TaskSpec({task!r}, extra_channels=...) or {{'name': {task!r}, 'extra_channels': ...}}"
            )
        return BUILTIN_TASKS[task]
    if isinstance(task, dict):
        unknown = set(task) - {f.name for f in fields(TaskSpec)}
        if unknown:
            raise ValueError(f"task {task!r} has unknown keys {sorted(unknown)}; allowed: name, extra_channels, description")
        return TaskSpec(**task)
    raise ValueError(f"a task must be a name, a dict or a TaskSpec, got {type(task).__name__}")


def _mtu_version() -> str:
    from mtu import __version__

    return __version__


@dataclass
class MTUConfig:
    """How to upcycle a denoiser.

    Args:
        tasks: the tasks the model serves, in task-id order; built-in names or `TaskSpec`s / dicts.
        num_experts: experts each FFN is split into; must divide every targeted FFN's hidden size.
        router_hidden_dim: width of each layer's router MLP (task embedding -> expert logits).
        task_embedding_dim: size of the learnable per-task embedding fed to every router.
        target_modules: regular expressions (full match on module names) selecting which diffusers
            `FeedForward`s to upcycle; None targets every `FeedForward`.
        base_model_name_or_path: where the base denoiser comes from (informational, saved with the weights).
        base_model_class: class name of the base denoiser; `mtu.load` checks it.
    """

    tasks: list[TaskSpec] = field(default_factory=lambda: list(BUILTIN_TASKS.values()))
    num_experts: int = 4
    router_hidden_dim: int = 64
    task_embedding_dim: int = 64
    target_modules: list[str] | None = None
    base_model_name_or_path: str | None = None
    base_model_class: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tasks, (str, TaskSpec, dict)):
            self.tasks = [self.tasks]
        self.tasks = [_as_task_spec(task) for task in self.tasks]
        if not self.tasks:
            raise ValueError("MTUConfig needs at least one task, e.g. tasks=['t2i', 'edit']")
        names = [task.name for task in self.tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique; repeated: {duplicates}")
        for name in ("num_experts", "router_hidden_dim", "task_embedding_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.target_modules is not None and not all(isinstance(p, str) for p in self.target_modules):
            raise ValueError(f"target_modules must be a list of regular expressions, got {self.target_modules!r}")

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def task_index(self, name: str) -> int:
        """Task id of `name`; ValueError listing the valid names otherwise."""
        try:
            return self.task_names.index(name)
        except ValueError:
            raise ValueError(f"unknown task {name!r}; this model serves {self.task_names}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"mtu_version": _mtu_version(), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MTUConfig":
        data = {key: value for key, value in data.items() if key != "mtu_version"}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown MTUConfig keys {sorted(unknown)}; allowed: {sorted(f.name for f in fields(cls))}. "
                "Was this file written by a newer mtu version?"
            )
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (a temp file renamed into place)."""
        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MTUConfig":
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no MTU config at {path}; an MTU folder holds {CONFIG_NAME} (write it with save_pretrained)")
        return cls.from_dict(json.loads(path.read_text()))


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
        temp = handle.name
    os.replace(temp, path)
