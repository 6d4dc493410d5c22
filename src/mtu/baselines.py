"""The paper's baselines as models: MTU's task layers without the experts, plus per-task adapters or a full denoiser.

| method | what it adds to the base denoiser |
|---|---|
| lora / ia3 | one peft adapter per task on each FFN's `ff.net.0.proj` and `ff.net.2`, plus MTU's task layers |
| full | nothing: every denoiser weight trains, plus MTU's task layers |

The task layers (per-task input conv and pre-FFN norms) come from `mtu.upcycle.add_task_layers`, so a
comparison with MTU isolates what the experts add. Adapters cannot mix tasks in one forward: `activate`
switches the whole model to one task's adapter (`MTUPipeline` does it per denoising loop).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

from torch import nn

from mtu.config import MTUConfig
from mtu.layers import TaskInputConv, TaskLayerNorm
from mtu.loading import ADAPTER_METHODS, NO_EXPERTS
from mtu.model import MTUModel
from mtu.upcycle import add_task_layers, find_feedforwards

BASELINE_METHODS = NO_EXPERTS  # the methods whose models have no experts


@dataclass(frozen=True)
class AdapterSpec:
    """The adapter of a baseline: peft method, rank and alpha (LoRA)."""

    method: str
    rank: int = 0
    alpha: float | None = None
    dropout: float = 0.0

    def peft_config(self, inputs: list[str], outputs: list[str]):
        from peft import IA3Config, LoraConfig

        if self.method == "lora":
            return LoraConfig(
                r=self.rank,
                lora_alpha=self.alpha or self.rank,
                lora_dropout=self.dropout,
                target_modules=inputs + outputs,
            )
        if self.method == "ia3":
            # IA3 on an FFN (as in the IA3 paper): scale the hidden activations (the output projection's input)
            # and here also the input projection's outputs.
            return IA3Config(target_modules=inputs + outputs, feedforward_modules=outputs)
        raise ValueError(f"unknown adapter method {self.method!r}; valid options: {list(ADAPTER_METHODS)}")


def ffn_linears(model: nn.Module, target_modules: list[str] | None) -> tuple[list[str], list[str]]:
    """(input projections, output projections) of the targeted FFNs: `<ff>.net.0.proj` and `<ff>.net.2`."""
    feedforwards = find_feedforwards(model, target_modules)
    return [f"{name}.net.0.proj" for name in feedforwards], [f"{name}.net.2" for name in feedforwards]


def _adapter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if "peft" not in sys.modules or not isinstance(model, nn.Module):
        return []  # no peft layer can exist before peft is imported (and an ONNX denoiser has none)
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


def has_adapters(model: nn.Module) -> bool:
    """Whether `model` holds peft adapter layers (a LoRA / IA3 baseline): it then runs one task per forward."""
    return bool(_adapter_layers(model))


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every adapter weight of every peft layer, by qualified name (found by type, not by name)."""
    found = {}
    for module_name, module in _adapter_layers(model):
        for layer_name in module.adapter_layer_names:
            for name, parameter in getattr(module, layer_name).named_parameters():
                found[f"{module_name}.{layer_name}.{name}"] = parameter
    return found


def activate(model: MTUModel, task: str) -> None:
    """Route every adapter layer through `task`'s adapter (LoRA / IA3 models; no-op for MTU).

    peft's `set_adapter` also freezes the inactive adapters; we turn them back to trainable so the set of
    trainable parameters never changes during training (the optimizer and DDP are built once over it).
    """
    layers = _adapter_layers(model.base_model)
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
            inject_adapter_in_model(spec.peft_config(inputs, outputs), model.base_model, adapter_name=task)
    # peft froze everything but the adapters: unfreeze the task layers again, by type as upcycle does.
    for module in model.base_model.modules():
        if isinstance(module, (TaskLayerNorm, TaskInputConv)):
            module.requires_grad_(True)
    for parameter in adapter_parameters(model.base_model).values():
        parameter.requires_grad_(True)


def build_baseline(unet: nn.Module, method: str, config: MTUConfig, adapter: AdapterSpec | None = None) -> MTUModel:
    """Turn `unet` (in place) into the untrained model of a baseline `method`; lora / ia3 need `adapter`."""
    if method in ADAPTER_METHODS:
        if adapter is None or adapter.method != method:
            raise ValueError(f"method {method!r} needs an AdapterSpec('{method}', ...)")
        model = add_task_layers(unet, config)
        _inject_adapters(model, adapter, config.target_modules)
        activate(model, model.task_names[0])
        return model
    if method == "full":
        model = add_task_layers(unet, config)
        model.base_model.requires_grad_(True)
        return model
    raise ValueError(f"unknown baseline {method!r}; valid options: {list(BASELINE_METHODS)}")
