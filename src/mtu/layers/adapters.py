"""The peft adapter layers a LoRA / IA3 baseline puts on a denoiser, found by type (never by name).

peft is imported only when it is already loaded: no adapter layer can exist before it is, and `mtu.model`
asks on every export.
"""

from __future__ import annotations

import sys

from torch import nn


def adapter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) of every peft adapter layer in `model`."""
    if "peft" not in sys.modules or not isinstance(model, nn.Module):
        return []  # no peft layer can exist before peft is imported (and an ONNX denoiser has none)
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


def has_adapters(model: nn.Module) -> bool:
    """Whether `model` holds peft adapter layers (a LoRA / IA3 baseline): it then runs one task per forward."""
    return bool(adapter_layers(model))


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every adapter weight of every peft layer, by qualified name (found by type, not by name)."""
    found = {}
    for module_name, module in adapter_layers(model):
        for layer_name in module.adapter_layer_names:
            for name, parameter in getattr(module, layer_name).named_parameters():
                found[f"{module_name}.{layer_name}.{name}"] = parameter
    return found
