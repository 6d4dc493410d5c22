"""The training configuration: small dataclasses read from YAML, every problem reported in one error.

    >>> config = load_config("configs/shapes.yaml", {"train.max_steps": 100})

`load_config` (and `TrainConfig.from_dict`) collect unknown keys, wrong types, impossible values and
missing files across the whole file and raise a single `ValueError` listing them all, so a broken config
is fixed in one round trip instead of one error per run. See docs/training.md for the schema.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mtu.assets import SHIPPED_MODELS, local_model_path
from mtu.config import LAYER_SETTINGS, MTUConfig, TaskSpec
from mtu.folders import inspect_model
from mtu.hub import is_hub_id
from mtu.methods import Method
from mtu.training.checks import choice, is_int, is_number, need, raise_problems
from mtu.training.extend import extends_problems
from mtu.training.sections import (
    SECTIONS,
    AdapterSection,
    CheckpointSection,
    DataSection,
    LoggingSection,
    TrainSection,
)
from mtu.training.task_config import SourceConfig, TaskConfig
from mtu.utils.limits import MAX_SEED
from mtu.utils.outputs import MODEL_MARKERS, check_not_source

__all__ = [
    "SECTIONS",
    "AdapterSection",
    "CheckpointSection",
    "DataSection",
    "LoggingSection",
    "SourceConfig",
    "TaskConfig",
    "TrainConfig",
    "TrainSection",
    "apply_overrides",
    "is_hub_id",
    "load_config",
    "raise_problems",
]


@dataclass
class TrainConfig:
    """A training run.

    Args:
        model: base model: a shipped name ("shapes-base"), a local diffusers pipeline folder, or a hub id.
        tasks: task name -> `TaskConfig`, in task-id order.
        method: a `mtu.methods.Method` name: "mtu", "single-task" (MTU's trainable parts, one task), "lora" or
            "ia3" (one adapter per task on the FFNs, plus MTU's task input convs and norms), "full", or
            "add-task" (new tasks on the trained MTU model `extends`, only their parts trained:
            `mtu.training.extend`).
        extends: add-task only: the MTU folder the tasks are added to; `tasks` lists the new tasks only.
        output_dir: run folder: checkpoints/, model/, logs/, samples/, train_log.jsonl.
        seed: seeds the model init and the data stream; null draws one (recorded in checkpoints).
        mtu: the MTU layer settings (`mtu.config.LAYER_SETTINGS`: experts, router, targets); the YAML `mtu:`
            section is read by `MTUConfig` itself, and `tasks` / `model` complete it (`mtu_config_of`).
    """

    model: str = "shapes-base"
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    method: str = "mtu"
    extends: str | None = None
    output_dir: str = "runs/mtu"
    seed: int | None = None
    mtu: MTUConfig = field(default_factory=MTUConfig)
    adapter: AdapterSection = field(default_factory=AdapterSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    @property
    def training_method(self) -> Method | None:
        """`method` as a `Method` (what it trains, loads, mixes); None while it names none (see `problems`)."""
        return next((method for method in Method if method == self.method), None)

    def task_specs(self) -> list[TaskSpec]:
        return [task.spec(name) for name, task in self.tasks.items()]

    def problems(self) -> list[str]:
        """Every problem of this config (empty when it is valid)."""
        found: list[str] = []
        if not isinstance(self.model, str) or not self.model:
            found.append(f"model: expected a shipped name, folder or hub id, got {self.model!r}")
        else:
            found += _model_problems(self.model)
        choice(found, "method", self.method, tuple(method.value for method in Method))
        found += extends_problems(self)
        output_ok = isinstance(self.output_dir, str) and bool(self.output_dir.strip())
        need(found, output_ok, f"output_dir: expected a path, got {self.output_dir!r}")
        found += _output_problems(self.output_dir, [self.model, self.extends]) if output_ok else []
        seed_ok = self.seed is None or is_int(self.seed) and 0 <= self.seed <= MAX_SEED  # torch's seed range
        need(found, seed_ok, f"seed: must be an int from 0 to 2**63 - 1 or null, got {self.seed!r}")
        if not self.tasks:
            found.append("tasks: at least one task is needed, e.g. tasks: {t2i: {source: {type: shapes}}}")
        for name, task in self.tasks.items():
            found += task.problems(name)
        weights = [t.weight for t in self.tasks.values() if is_number(t.weight)]
        if self.tasks and len(weights) == len(self.tasks) and sum(weights) <= 0:
            found.append("tasks: the sampling weights sum to 0; give at least one task a positive weight")
        method = self.training_method
        if method is not None and method.one_task and len(self.tasks) != 1:
            found.append(
                f"method: {self.method} trains exactly one task, got {len(self.tasks)} ({self.task_names}); "
                "run once per task, or use method: mtu"
            )
        for name in SECTIONS:
            found += getattr(self, name).problems()
        shapes = [name for name, task in self.tasks.items() if task.source.type == "shapes"]
        if self.data.cache == "latents" and self.data.pool_size is None and shapes:
            found.append(
                f"data.cache: latents needs a finite pool for the shapes tasks {shapes}; set data.pool_size "
                "(e.g. 8192 examples per task)"
            )
        return found

    def check(self) -> None:
        """Raise one ValueError listing every problem, if there is any."""
        raise_problems(self.problems())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mtu": self.mtu.layer_settings()}  # the section as written: tasks are above

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and validate a config from plain data (parsed YAML); one ValueError lists every problem."""
        config, found = cls.parse(data)
        raise_problems(found)
        return config

    @classmethod
    def parse(cls, data: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
        """(config, every problem found): unknown keys and non-mappings as well as invalid values."""
        found: list[str] = []
        if not isinstance(data, dict):
            raise ValueError(f"a training config is a mapping of sections, got {type(data).__name__}")
        top = _known(cls, data, "config", found)
        tasks = {}
        raw_tasks = top.pop("tasks", None) or {}
        if not isinstance(raw_tasks, dict):
            found.append(f"tasks: expected a mapping task name -> settings, got {type(raw_tasks).__name__}")
            raw_tasks = {}
        for name, raw in raw_tasks.items():
            values = _known(TaskConfig, raw if raw is not None else {}, f"tasks.{name}", found)
            source = _known(SourceConfig, values.get("source") or {}, f"tasks.{name}.source", found)
            tasks[name] = TaskConfig(**{**values, "source": SourceConfig(**source)})
        sections = {
            name: section(**_known(section, top.pop(name, None) or {}, name, found))
            for name, section in SECTIONS.items()
        }
        sections["mtu"] = _mtu_section(top.pop("mtu", None) or {}, found)
        config = cls(tasks=tasks, **top, **sections)
        return config, found + config.problems()


def _mtu_section(data: Any, found: list[str]) -> MTUConfig:
    """The `mtu:` section as an `MTUConfig` (its tasks are set later, from `tasks`); its problems join `found`."""
    values = _known(LAYER_SETTINGS, data, "mtu", found)
    problems = MTUConfig.setting_problems(values)
    found += [f"mtu.{name}: {problem}" for name, problem in problems]
    try:
        return MTUConfig(**values) if not problems else MTUConfig()
    except ValueError as error:  # a size over its bound (`mtu.config.check_bounds`)
        found.append(f"mtu: {error}")
        return MTUConfig()


def _known(cls: type | tuple[str, ...], data: Any, where: str, found: list[str]) -> dict[str, Any]:
    """The entries of `data` that are fields of `cls` (or among these names); unknown keys and non-mappings become
    problems."""
    if not isinstance(data, dict):
        found.append(f"{where}: expected a mapping, got {data!r}")
        return {}
    names = list(cls) if isinstance(cls, tuple) else [f.name for f in fields(cls)]
    unknown = sorted(str(key) for key in set(data) - set(names))
    if unknown:
        found.append(f"{where}: unknown keys {unknown}; allowed: {names}")
    return {key: value for key, value in data.items() if key in names}


def _model_problems(model: str) -> list[str]:
    if is_hub_id(model) and model not in SHIPPED_MODELS:
        return []
    try:
        source = inspect_model(model)
    except (FileNotFoundError, ValueError) as error:
        return [f"model: {error}"]
    if source.kind != "base":
        return [f"model: {model} is {source.label}; training starts from its base pipeline folder (model_index.json)"]
    if not (source.path / "unet").is_dir():
        return [f"model: {source.path} has no unet/: not a diffusers pipeline folder"]
    return []


def _output_problems(output_dir: str, models: list) -> list[str]:
    """output_dir must not be, hold or lie inside a model the run reads, nor be a model folder at all: the run
    writes checkpoints, logs and model/ into it."""
    local = [local_model_path(model) for model in models]
    try:
        check_not_source(output_dir, local, "output_dir")
    except ValueError as error:
        return [str(error)]
    marker = next((name for name in MODEL_MARKERS if (Path(output_dir) / name).is_file()), None)
    if marker:
        return [
            f"output_dir: {output_dir} holds {marker}, so it is a model folder, not a run folder; the run would "
            "write its checkpoints and logs into it: choose another output_dir"
        ]
    return []


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys ("train.max_steps") in a copy of parsed YAML; None values are skipped."""
    import copy

    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config, apply dotted-key overrides, validate.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: unreadable YAML, or the list of every problem in the config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training config at {path}; see configs/shapes.yaml for an example")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    return TrainConfig.from_dict(apply_overrides(data, overrides or {}))
