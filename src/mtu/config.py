"""Configuration of a Multi-Task Upcycled model: which tasks, how many experts, what to target.

`MTUConfig` round-trips through JSON (`save`/`load`) and is stored beside the MTU weights by
`MTUModel.save_pretrained`.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mtu.utils.outputs import write_text_atomic
from mtu.version import __version__

# The files of an MTU folder (`MTUModel.save_pretrained`).
CONFIG_NAME = "mtu_config.json"
WEIGHTS_NAME = "mtu_model.safetensors"
PICKLE_WEIGHTS_NAME = "mtu_model.bin"  # legacy; loaded only when allowed
LEGACY_EMBEDDING_KEY = "task_embedding.weight"  # one shared table, before per-task embeddings (converted at load)


# Far above any real model (SD 1.5 upcycled: 64 / 64 / 4 / 5 tasks), far below what would exhaust memory.
BOUNDS = {
    "num_experts": 1024,
    "router_hidden_dim": 65536,
    "task_embedding_dim": 65536,
    "tasks": 1024,
    "extra_channels": 4096,
    "rank": 65536,
}


def check_bounds(config: Any) -> None:
    """Refuse an MTU config (`mtu.config.MTUConfig`) whose sizes no real model has: a damaged or hostile file,
    or a typo in `mtu upcycle --router-hidden-dim`, would otherwise allocate them."""
    sizes = {name: getattr(config, name) for name in ("num_experts", "router_hidden_dim", "task_embedding_dim")}
    sizes["tasks"] = len(config.tasks)
    for task in config.tasks:
        sizes[f"extra_channels of task {task.name!r}"] = task.extra_channels or 0
    for name, value in sizes.items():
        bound = BOUNDS[name.split(" ")[0]]
        if value > bound:
            raise ValueError(f"{name} = {value} is over {bound:,}: no real model is this large (a damaged file?)")


# How a task's conditioning enters the denoiser, after the noisy latent (C = its latent channels):
CONDITIONINGS = {
    "none": "nothing: the base model's own input (C channels)",
    "image": "a conditioning image's latent (C more channels; InstructPix2Pix layout)",
    "masked_image": "a mask and the masked image's latent (1 + C more channels; SD-inpainting layout)",
    "custom": "extra_channels channels the caller builds",
}

# What a task's text is to it (`TaskSpec.prompt`).
PROMPTS = {
    "required": "the text says what to make or change: without it the task is undefined",
    "optional": "the input image defines the output; a caption may help, an empty prompt is fine",
}


MAX_TASK_NAME = 32
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def task_name(name: object) -> str:
    """`name` NFKC-normalised if it is an ASCII identifier of at most `MAX_TASK_NAME` characters.

    Normalising makes the full-width 'ｔ2i' the same name as 't2i' (and so a repeated one); ASCII keeps names
    that look alike but differ (a Cyrillic 'е' in 'edit') out of file names, URLs and configs.
    """
    normal = unicodedata.normalize("NFKC", name) if isinstance(name, str) else None
    if normal is None or not _TASK_NAME.fullmatch(normal) or len(normal) > MAX_TASK_NAME:
        raise ValueError(
            f"task name {name!r} must be an ASCII identifier (letters, digits and _, not starting with a digit) "
            f"of at most {MAX_TASK_NAME} characters, such as 'edit' or 'depth2img'"
        )
    return normal


@dataclass(frozen=True)
class TaskSpec:
    """A task is data: its name, how its conditioning enters the denoiser input, and how it treats its inputs.

    Everything that pipelines, training, evaluation and the demo do differently per task is read from
    here, so a task declared by a user gets the same treatment as a built-in one.

    Args:
        name: identifier used in `model(..., task=name)`: ASCII, at most 32 characters, NFKC-normalised
            (`task_name`).
        conditioning: one of "none", "image", "masked_image", "custom" (see `CONDITIONINGS`). The channel
            count of the first three follows the base model's latent channels (4 for SD, 16 for SD3).
        extra_channels: for "custom" only: the number of channels appended after the noisy latent.
        description: one line for humans (reports, `mtu info`).
        upscale: "image" tasks only: the output is `upscale` times the input image a side (sr: 4); the
            pipeline resizes the low-resolution input to the output size itself, and training makes that
            input by degrading the target by this factor.
        prompt: "required" when the text says what to make or change (t2i's caption, edit's instruction);
            "optional" when the input image defines the output and a caption may only help (sr, inpaint).
        phrases: regular expressions of the words that ask for this task in a chat request (matched on whole
            words, lower case), e.g. ("remove", "get rid of"); `mtu serve` guesses the task from them
            (`mtu.serve.guess_task`). None: the task is only run when chosen.
    """

    name: str
    conditioning: str = "custom"
    extra_channels: int | None = None
    description: str = ""
    upscale: int = 1
    prompt: str = "required"
    phrases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", task_name(self.name))  # frozen
        if not isinstance(self.conditioning, str) or self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"task {self.name!r}: conditioning {self.conditioning!r} is not one of {sorted(CONDITIONINGS)}"
            )
        if self.conditioning == "custom":
            if (
                isinstance(self.extra_channels, bool)
                or not isinstance(self.extra_channels, int)
                or self.extra_channels < 0
            ):
                raise ValueError(
                    f"task {self.name!r}: a custom task needs extra_channels, an int >= 0, got {self.extra_channels!r}"
                )
        elif self.extra_channels is not None:
            raise ValueError(
                f"task {self.name!r}: extra_channels is set by conditioning={self.conditioning!r}; "
                "leave it out, or use conditioning='custom'"
            )
        if isinstance(self.upscale, bool) or not isinstance(self.upscale, int) or self.upscale < 1:
            raise ValueError(f"task {self.name!r}: upscale must be an int >= 1, got {self.upscale!r}")
        if self.upscale > 1 and self.conditioning != "image":
            raise ValueError(
                f"task {self.name!r}: upscale={self.upscale} needs conditioning='image' (an input image to scale up), "
                f"got {self.conditioning!r}"
            )
        if not isinstance(self.prompt, str) or self.prompt not in PROMPTS:
            raise ValueError(f"task {self.name!r}: prompt {self.prompt!r} is not one of {sorted(PROMPTS)}")
        self._check_phrases()

    def _check_phrases(self) -> None:
        phrases = (self.phrases,) if isinstance(self.phrases, str) else self.phrases
        if not isinstance(phrases, (list, tuple)) or not all(isinstance(p, str) and p for p in phrases):
            raise ValueError(f"task {self.name!r}: phrases must be a list of regular expressions, got {self.phrases!r}")
        for phrase in phrases:
            try:
                re.compile(phrase)
            except re.error as error:
                raise ValueError(f"task {self.name!r}: phrase {phrase!r} is no regular expression: {error}") from None
        object.__setattr__(self, "phrases", tuple(phrases))  # frozen; a tuple keeps the spec hashable

    def input_channels(self, latent_channels: int) -> int:
        """Channels of this task's denoiser input for a base model taking `latent_channels`."""
        extra = {"none": 0, "image": latent_channels, "masked_image": 1 + latent_channels}
        return latent_channels + extra.get(self.conditioning, self.extra_channels or 0)


# How a chat asks for a change to an image ("make the circle blue", "turn it into a square"): the phrases of
# edit, and of inpaint when an area is painted (`mtu.serve.guess_task` prefers the task the inputs fit).
CHANGE_VERBS = (
    r"make (it|them|this|that|the|all|everything|its)",
    r"turn",
    r"change",
    r"recolou?r",
    r"paint",
    r"replace",
    r"swap",
    r"move",
    r"shift",
    r"slide",
    r"convert",
)

# DESIGN.md section 3: the built-in tasks and their conditioning layouts. Append only: the Shapes world
# makes exactly these tasks and seeds each task's held-out set by its position here.
BUILTIN_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("t2i", "none", description="text-to-image: the base model's own task"),
        TaskSpec("edit", "image", description="instruction editing: InstructPix2Pix layout", phrases=CHANGE_VERBS),
        TaskSpec(
            "sr",
            "image",
            description="super-resolution: latent of the low-res image resized to the output size",
            upscale=4,
            prompt="optional",
            phrases=(
                r"upscale",
                r"upsample",
                r"enhance",
                r"super[- ]?res\w*",
                r"sharpen",
                r"enlarge",
                r"(higher|increase( the)?|more) resolution",
            ),
        ),
        TaskSpec(
            "remove",
            "image",
            description="object removal from an instruction, no mask (the paper's inpainting)",
            phrases=(r"remove", r"delete", r"erase", r"get rid of", r"take (away|out)"),
        ),
        TaskSpec(
            "inpaint",
            "masked_image",
            description="mask-based inpainting: SD-inpainting layout",
            prompt="optional",
            phrases=(r"fill", r"inpaint\w*", *CHANGE_VERBS),  # the verbs of a change, said of a painted area
        ),
        TaskSpec(
            "colorize",
            "image",
            description="colourise a grayscale image (the Shapes task added after training)",
            phrases=(r"colou?ri[sz]\w*",),
        ),
    )
}


# What an MTUConfig serves when not told: the DESIGN.md table (colorize is built in for adding later).
DEFAULT_TASKS = ("t2i", "edit", "sr", "remove", "inpaint")

# The settings of the MTU layers, apart from the tasks and the base model: what a training config's `mtu:`
# section and `mtu upcycle`'s options set. Their defaults are written once, as `MTUConfig`'s field defaults.
LAYER_SETTINGS = (
    "num_experts",
    "router_hidden_dim",
    "task_embedding_dim",
    "router_bias",
    "gate_dropout",
    "target_modules",
)
SIZES = LAYER_SETTINGS[:3]  # the positive ints that size the layers


def as_task_spec(task: TaskSpec | str | dict) -> TaskSpec:
    """A task given as a built-in name, a dict of `TaskSpec` fields, or a `TaskSpec`."""
    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, str):
        if task not in BUILTIN_TASKS:
            raise ValueError(
                f"unknown task {task!r}; built-in tasks are {sorted(BUILTIN_TASKS)}. Declare your own as "
                f"TaskSpec({task!r}, conditioning='image') or {{'name': {task!r}, 'extra_channels': ...}}"
            )
        return BUILTIN_TASKS[task]
    if isinstance(task, dict):
        unknown = set(task) - {f.name for f in fields(TaskSpec)}
        if unknown:
            allowed = [f.name for f in fields(TaskSpec)]
            raise ValueError(f"task {task!r} has unknown keys {sorted(unknown)}; allowed: {allowed}")
        name = task.get("name")
        builtin = BUILTIN_TASKS.get(name) if isinstance(name, str) else None  # a list is no name (nor hashable)
        if builtin is not None and task.get("conditioning", "custom") == builtin.conditioning:
            # Saved before `upscale` / `prompt` / `phrases` existed: a built-in task keeps its built-in behaviour.
            task = {**asdict(builtin), **task}
        return TaskSpec(**task)
    raise ValueError(f"a task must be a name, a dict or a TaskSpec, got {type(task).__name__}")


@dataclass
class MTUConfig:
    """How to upcycle a denoiser.

    Args:
        tasks: the tasks the model serves, in task-id order; built-in names or `TaskSpec`s / dicts.
        num_experts: experts each FFN is split into; must divide every targeted FFN's hidden size.
        router_hidden_dim: width of each layer's router MLP (task embedding -> expert logits).
        task_embedding_dim: size of the learnable per-task embedding fed to every router.
        router_bias: whether each router's last layer has a bias (the paper's router: True). False leaves no
            router parameter whose update is the same for every task (`mtu.layers.TaskRouter`).
        gate_dropout: training only: probability of dropping an expert from a router's mixture (the rest
            renormalised); 0 turns it off. Inference never drops.
        target_modules: regular expressions (full match on module names) selecting which diffusers
            `FeedForward`s to upcycle; None targets every `FeedForward`.
        base_model_name_or_path: where the base denoiser comes from (informational, saved with the weights).
        base_model_class: class name of the base denoiser; `mtu.load` checks it.
    """

    tasks: list[TaskSpec] = field(default_factory=lambda: [BUILTIN_TASKS[name] for name in DEFAULT_TASKS])
    num_experts: int = 4
    router_hidden_dim: int = 64
    task_embedding_dim: int = 64
    router_bias: bool = True
    gate_dropout: float = 0.0
    target_modules: list[str] | None = None
    base_model_name_or_path: str | None = None
    base_model_class: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tasks, (str, TaskSpec, dict)):
            self.tasks = [self.tasks]
        if not isinstance(self.tasks, (list, tuple)):
            raise ValueError(f"tasks must be a list of task names, dicts or TaskSpecs, got {self.tasks!r}")
        self.tasks = [as_task_spec(task) for task in self.tasks]
        if not self.tasks:
            raise ValueError("MTUConfig needs at least one task, e.g. tasks=['t2i', 'edit']")
        names = [task.name for task in self.tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique; repeated: {duplicates}")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        problems = self.setting_problems(self.layer_settings())
        if problems:
            raise ValueError(" ".join(problems[0]))  # "num_experts must be a positive int, got 0"
        check_bounds(self)  # every size is memory allocated on its word when a model is built from it
        for name in ("base_model_name_or_path", "base_model_class"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")

    @staticmethod
    def setting_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
        """(name, what is wrong with it) for each bad layer setting among `values` (`LAYER_SETTINGS` keys).

        `MTUConfig` raises the first; a training config reports them all as `mtu.<name>: ...`.
        """
        found = []
        for name in SIZES:
            value = values.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append((name, f"must be a positive int, got {value!r}"))
        if not isinstance(values.get("router_bias", True), bool):
            found.append(("router_bias", f"must be true or false, got {values['router_bias']!r}"))
        dropout = values.get("gate_dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            found.append(("gate_dropout", f"must be a probability in [0, 1) (0 turns it off), got {dropout!r}"))
        patterns = values.get("target_modules")
        if isinstance(patterns, str):
            patterns = [patterns]
        if patterns is not None and not (
            isinstance(patterns, (list, tuple)) and all(isinstance(p, str) for p in patterns)
        ):
            found.append(("target_modules", f"must be a list of regular expressions or null, got {patterns!r}"))
        return found

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of setting `name` (the command line's defaults are these)."""
        return next(f.default for f in fields(cls) if f.name == name)

    def layer_settings(self) -> dict[str, Any]:
        """The `LAYER_SETTINGS` of this config, by name (a training config's `mtu:` section)."""
        return {name: getattr(self, name) for name in LAYER_SETTINGS}

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
        return {"mtu_version": __version__, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MTUConfig:
        if not isinstance(data, dict):
            raise ValueError(f"an MTU config is a JSON object of settings, got a {type(data).__name__}")
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
    def load(cls, path: str | os.PathLike) -> MTUConfig:
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no MTU config at {path}; an MTU folder holds {CONFIG_NAME} (write it with save_pretrained)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "tasks" not in data:
                # not the dataclass default: a folder's weights serve its own tasks, which the file must name
                raise ValueError("no 'tasks': an MTU config lists the tasks its weights serve, in task-id order")
            return cls.from_dict(data)
        except ValueError as error:  # JSON and UTF-8 errors are ValueErrors too: name the file in all of them
            raise ValueError(f"{path}: {error}") from None
