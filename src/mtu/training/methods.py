"""What trains: MTU and the paper's baselines, built on the same base denoiser and the same task layers.

| method | trainable |
|---|---|
| mtu | experts (the FFN weights), routers, task embeddings, task norms, task input convs |
| single-task | the same parts, for one task |
| lora / ia3 | one peft adapter per task on each FFN's `ff.net.0.proj` and `ff.net.2`, plus the same task layers |
| full | every denoiser weight, for one task (the paper's Fig. 2 deviation analysis), plus the task layers |
| add-task | the new tasks' embeddings, input convs and norms on a trained MTU model (`mtu.training.extend`) |

The baselines' models are `mtu.baselines`'; a run's folder is written by `mtu.loading.save_trained` and
loaded back by the one loader (`mtu.load`, `MTUPipeline.from_pretrained`). The data loader gives adapter
methods single-task batches (`mtu.baselines.activate` switches the whole model to one task's adapter).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from mtu.baselines import AdapterSpec, activate, build_baseline
from mtu.config import MTUConfig
from mtu.methods import Method
from mtu.model import MTUModel
from mtu.training.config import TrainConfig
from mtu.training.extend import extend_model, extended_config
from mtu.upcycle import upcycle

# AdapterSpec and activate are the baselines' (mtu.baselines), named here beside build_model for training code.
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
