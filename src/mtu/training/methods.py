"""What trains: MTU and the paper's baselines, built on the same base denoiser and the same task layers.

| method | trainable |
|---|---|
| mtu | experts (the FFN weights), routers, task embeddings, task norms, task input convs |
| single-task | the same parts, for one task |
| lora / ia3 | one peft adapter per task on each FFN's `ff.net.0.proj` and `ff.net.2`, plus the same task layers |
| full | every denoiser weight, for one task (the paper's Fig. 2 deviation analysis), plus the task layers |
| add-task | the new tasks' embeddings, input convs and norms on a trained MTU model (`mtu.training.extend`) |

The baselines' models are `mtu.baseline_models`'; a run's folder is written by `mtu.loading.save_trained` and
loaded back by the one loader (`mtu.load`, `MTUPipeline.from_pretrained`). The data loader gives adapter
methods single-task batches (`mtu.baseline_models.activate` switches the whole model to one task's adapter).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from mtu.baseline_models import AdapterSpec, activate, build_baseline
from mtu.config import MTUConfig
from mtu.loading import load
from mtu.methods import Method
from mtu.model import MTUModel
from mtu.training.config import TrainConfig
from mtu.training.extend import extended_config
from mtu.upcycling import upcycle

# AdapterSpec and activate are the baselines' (mtu.baseline_models), named here beside build_model for training code.
__all__ = ["AdapterSpec", "activate", "build_model", "mtu_config_of"]


def mtu_config_of(config: TrainConfig) -> MTUConfig:
    if Method(config.method).extends:
        return extended_config(config)  # sizes and served tasks are the extended folder's
    return dataclasses.replace(config.mtu, tasks=config.task_specs(), base_model_name_or_path=config.model)


def build_model(
    unet: nn.Module,
    method: Method | str,
    mtu_config: MTUConfig,
    adapter: AdapterSpec | None = None,
    extends: str | None = None,
) -> MTUModel:
    """Turn `unet` (in place) into the model `method` trains. Adapter methods need `adapter`.

    add-task with `extends`: that folder's model plus the new tasks, only theirs trainable.
    """
    method = Method.parse(method)
    if method.extends and extends is not None:
        return extend_model(unet, extends, mtu_config)
    if method.has_experts:
        return upcycle(unet, mtu_config)
    return build_baseline(unet, method, mtu_config, adapter)


def extend_model(unet, folder: str | Path, mtu_config: MTUConfig):
    """The model of `folder` on `unet` (modified in place) plus the tasks `mtu_config` lists after its own.

    Only the new tasks' parts are left trainable.
    """
    model = load(unet, Path(folder).expanduser())
    served = model.task_names
    if mtu_config.task_names[: len(served)] != served:
        raise ValueError(f"{folder} serves {served}; the run's tasks {mtu_config.task_names} must start with those")
    new = mtu_config.tasks[len(served) :]
    for spec in new:
        model.add_task(spec)  # the embedding draws from torch's global RNG, which the run's seed has set
    train_only(model, [spec.name for spec in new])
    return model


def train_only(model, tasks: list[str]) -> None:
    """Freeze every parameter of `model` except the parts only `tasks` use (embedding, input conv, norms)."""
    model.requires_grad_(False)
    for task in tasks:
        for parameter in model.task_parameters(task):
            parameter.requires_grad_(True)
