"""Training tasks added to a trained MTU model (`method: add-task`): only the new tasks' parts train.

    method: add-task
    extends: runs/shapes-mtu/model                  # the MTU folder whose tasks must not change
    tasks: {colorize: {source: {type: shapes}}}     # the new tasks only: the data stream draws these

The model (`mtu.training.methods.extend_model`) is the extended folder's (`mtu.load`) plus each new task
(`MTUModel.add_task`, appended, so the old tasks keep their ids); everything but the new tasks' embeddings,
input convs and pre-FFN norms is frozen. The old tasks' weights, the experts and the routers never reach the
optimizer (no gradient, no weight decay, no moments), so every old task's output stays bit-identical. Layer
sizes come from the extended folder; the config's `mtu` section is not used.

The run's model/ folder holds the whole MTU weights (the old ones copied verbatim, plus the new tasks'),
not the new parts plus a reference to the extended folder: it then loads as any MTU folder (`mtu.load`,
`MTUPipeline.from_pretrained`, `mtu eval`, export, serve) and survives the extended folder being moved or
deleted. The price is one more copy of the experts (the FFN weights) on disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mtu.assets import resolve_model_path
from mtu.config import MTUConfig
from mtu.folders import inspect_model
from mtu.methods import Method

ADD_TASK = Method.ADD_TASK.value  # the method this module serves (`Method.extends`)


def extends_problems(config) -> list[str]:
    """Problems of `config.extends`, which method add-task needs and no other method takes."""
    method = config.training_method
    if method is None or not method.extends:
        return [] if config.extends is None else [f"extends: only for method {ADD_TASK} (method is {config.method!r})"]
    if not isinstance(config.extends, str) or not config.extends:
        needed = (
            f"method {ADD_TASK} needs the MTU folder it adds tasks to (mtu upcycle / mtu add-task output, or a "
            "run's model/)"
        )
        return [f"extends: {needed}"]
    folder = Path(config.extends).expanduser()
    try:
        source = inspect_model(folder)
        source.check_extendable()
        extended = source.config()
    except (ValueError, OSError) as error:
        return [f"extends: {error}"]
    found = []
    clashes = [name for name in config.tasks if name in extended.task_names]
    if clashes:
        found.append(f"tasks: {clashes} already served by {folder} ({extended.task_names}); list only the new tasks")
    if not _same_model(config.model, extended.base_model_name_or_path):
        found.append(
            f"model: {config.model!r}, but {folder} was upcycled from {extended.base_model_name_or_path!r}; "
            "set model to that base"
        )
    return found


def _same_model(model: str, base: str | None) -> bool:
    """Whether two model references name one folder (shipped names resolved); unknown bases are not refused."""
    if base is None or model == base:
        return True
    try:
        return resolve_model_path(model).resolve() == resolve_model_path(base).resolve()
    except FileNotFoundError:  # a hub id on either side: only the names can be compared
        return False


def extended_config(config) -> MTUConfig:
    """The MTU config of an add-task run: the extended folder's (sizes, targets, tasks), then the new tasks."""
    extended = MTUConfig.load(Path(config.extends).expanduser())
    return dataclasses.replace(
        extended, tasks=[*extended.tasks, *config.task_specs()], base_model_name_or_path=config.model
    )
