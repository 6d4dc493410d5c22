"""The paper's baselines as models: MTU's task layers without the experts, plus per-task adapters or a full denoiser.

| method | what it adds to the base denoiser |
|---|---|
| lora / ia3 | one peft adapter per task on each FFN's `ff.net.0.proj` and `ff.net.2`, plus MTU's task layers |
| full | nothing: every denoiser weight trains, plus MTU's task layers |

The task layers (per-task input conv and pre-FFN norms) come from `mtu.upcycling.add_task_layers`, so a
comparison with MTU isolates what the experts add. Adapters cannot mix tasks in one forward: `activate`
switches the whole model to one task's adapter (`MTUPipeline` does it per denoising loop).
"""

from __future__ import annotations

import warnings

from torch import nn

from mtu.config import MTUConfig
from mtu.layers import TaskInputConv, TaskLayerNorm
from mtu.layers.adapters import adapter_layers, adapter_parameters, has_adapters
from mtu.methods import BASELINES, AdapterSpec, Method
from mtu.model import MTUModel
from mtu.upcycling import add_task_layers, find_feedforwards


def peft_config(spec: AdapterSpec, inputs: list[str], outputs: list[str]):
    """The peft config of `spec` on the FFN linears `inputs` (`ff.net.0.proj`) and `outputs` (`ff.net.2`)."""
    make = _PEFT_CONFIGS.get(spec.method)
    if make is None:
        raise ValueError(f"unknown adapter method {spec.method!r}; valid options: {[m.value for m in _PEFT_CONFIGS]}")
    return make(spec, inputs, outputs)


def _lora_config(spec: AdapterSpec, inputs: list[str], outputs: list[str]):
    from peft import LoraConfig

    return LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha or spec.rank, lora_dropout=spec.dropout, target_modules=inputs + outputs
    )


def _ia3_config(spec: AdapterSpec, inputs: list[str], outputs: list[str]):
    from peft import IA3Config

    # IA3 on an FFN (as in the IA3 paper): scale the hidden activations (the output projection's input)
    # and here also the input projection's outputs.
    return IA3Config(target_modules=inputs + outputs, feedforward_modules=outputs)


# Each adapter method's peft config (the methods whose `Method.adapters` is true).
_PEFT_CONFIGS = {Method.LORA: _lora_config, Method.IA3: _ia3_config}


__all__ = ["AdapterSpec", "activate", "adapter_parameters", "build_baseline", "ffn_linears", "has_adapters"]


def ffn_linears(model: nn.Module, target_modules: list[str] | None) -> tuple[list[str], list[str]]:
    """(input projections, output projections) of the targeted FFNs: `<ff>.net.0.proj` and `<ff>.net.2`."""
    feedforwards = find_feedforwards(model, target_modules)
    return [f"{name}.net.0.proj" for name in feedforwards], [f"{name}.net.2" for name in feedforwards]


def activate(model: MTUModel, task: str) -> None:
    """Route every adapter layer through `task`'s adapter (LoRA / IA3 models; no-op for MTU).

    peft's `set_adapter` also freezes the inactive adapters; we turn them back to trainable so the set of
    trainable parameters never changes during training (the optimizer and DDP are built once over it).
    """
    layers = adapter_layers(model.base_model)
    for _, module in layers:
        module.set_adapter(task)
    if layers:
        for parameter in adapter_parameters(model.base_model).values():
            parameter.requires_grad_(True)


def _inject_adapters(model: MTUModel, spec: AdapterSpec, target_modules: list[str] | None) -> None:
    from peft import inject_adapter_in_model

    inputs, outputs = ffn_linears(model.base_model, target_modules)
    with warnings.catch_warnings():
        # peft warns that a second adapter joins the first: one adapter per task is the point here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        for task in model.task_names:
            inject_adapter_in_model(peft_config(spec, inputs, outputs), model.base_model, adapter_name=task)
    # peft froze everything but the adapters: unfreeze the task layers again, by type as upcycle does.
    for module in model.base_model.modules():
        if isinstance(module, (TaskLayerNorm, TaskInputConv)):
            module.requires_grad_(True)
    for parameter in adapter_parameters(model.base_model).values():
        parameter.requires_grad_(True)


def build_baseline(
    unet: nn.Module, method: Method | str, config: MTUConfig, adapter: AdapterSpec | None = None
) -> MTUModel:
    """Turn `unet` (in place) into the untrained model of a baseline `method`; lora / ia3 need `adapter`."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; valid options: {[m.value for m in BASELINES]}")
    method = Method(method)
    if method.adapters and (adapter is None or adapter.method != method):
        raise ValueError(f"method {method.value!r} needs an AdapterSpec('{method}', ...)")
    model = add_task_layers(unet, config)
    if method.adapters:
        _inject_adapters(model, adapter, config.target_modules)
        activate(model, model.task_names[0])
    if method.whole_denoiser:
        model.base_model.requires_grad_(True)
    return model
