"""What trains: MTU and the paper's baselines, built on the same base denoiser and the same task layers.

| method | trainable |
|---|---|
| mtu | experts (the FFN weights), routers, task embeddings, task norms, task input convs |
| single-task | the same parts, for one task |
| lora / ia3 | one peft adapter per task on each FFN's `ff.net.0.proj` and `ff.net.2`, plus the same task layers |
| full | every denoiser weight, for one task (the paper's Fig. 2 deviation analysis), plus the task layers |
| add-task | the new tasks' embeddings, input convs and norms on a trained MTU model (`mtu.training.extend`) |

The baselines get their task layers from `mtu.upcycle.add_task_layers` (MTU minus the experts), so the
comparison isolates what the experts add. Adapters cannot mix tasks in one forward: `activate` switches
the whole model to one task's adapter, and the data loader gives them single-task batches.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import IA3Config, LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import nn

from mtu.config import MTUConfig
from mtu.layers import TaskInputConv, TaskLayerNorm
from mtu.model import MTUModel
from mtu.training.config import METHODS, TrainConfig
from mtu.training.extend import ADD_TASK, extend_model, extended_config
from mtu.upcycle import add_task_layers, find_feedforwards, upcycle

METHOD_FILE = "training_method.json"
ADAPTERS_FILE = "adapters.safetensors"
DENOISER_FILE = "denoiser.safetensors"  # method "full": every weight of the fine-tuned denoiser
ADAPTER_METHODS = ("lora", "ia3")


def mtu_config_of(config: TrainConfig) -> MTUConfig:
    if config.method == ADD_TASK:
        return extended_config(config)  # sizes and served tasks are the extended folder's
    section = config.mtu
    return MTUConfig(
        tasks=config.task_specs(),
        num_experts=section.num_experts,
        router_hidden_dim=section.router_hidden_dim,
        task_embedding_dim=section.task_embedding_dim,
        target_modules=section.target_modules,
        base_model_name_or_path=config.model,
    )


def ffn_linears(model: nn.Module, target_modules: list[str] | None) -> tuple[list[str], list[str]]:
    """(input projections, output projections) of the targeted FFNs: `<ff>.net.0.proj` and `<ff>.net.2`."""
    feedforwards = find_feedforwards(model, target_modules)
    return [f"{name}.net.0.proj" for name in feedforwards], [f"{name}.net.2" for name in feedforwards]


@dataclass(frozen=True)
class AdapterSpec:
    """The adapter of a baseline: peft method, rank and alpha (LoRA)."""

    method: str
    rank: int = 0
    alpha: float | None = None
    dropout: float = 0.0

    def peft_config(self, inputs: list[str], outputs: list[str]):
        if self.method == "lora":
            return LoraConfig(
                r=self.rank,
                lora_alpha=self.alpha or self.rank,
                lora_dropout=self.dropout,
                target_modules=inputs + outputs,
            )
        # IA3 on an FFN (as in the IA3 paper): scale the hidden activations (the output projection's input)
        # and here also the input projection's outputs.
        return IA3Config(target_modules=inputs + outputs, feedforward_modules=outputs)


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every adapter weight of every peft layer, by qualified name (found by type, not by name)."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            for layer_name in module.adapter_layer_names:
                for name, parameter in getattr(module, layer_name).named_parameters():
                    found[f"{module_name}.{layer_name}.{name}"] = parameter
    return found


def activate(model: MTUModel, task: str) -> None:
    """Route every adapter layer through `task`'s adapter (LoRA / IA3 models; no-op for MTU).

    peft's `set_adapter` also freezes the inactive adapters; we turn them back to trainable so the set of
    trainable parameters never changes during training (the optimizer and DDP are built once over it).
    """
    for module in model.base_model.modules():
        if isinstance(module, BaseTunerLayer):
            module.set_adapter(task)
    for parameter in adapter_parameters(model.base_model).values():
        parameter.requires_grad_(True)


def _inject_adapters(model: MTUModel, spec: AdapterSpec, target_modules: list[str] | None) -> None:
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


def build_model(
    unet: nn.Module, method: str, mtu_config: MTUConfig, adapter: AdapterSpec | None = None, extends: str | None = None
) -> MTUModel:
    """Turn `unet` (in place) into the model `method` trains. Adapter methods need `adapter`.

    add-task with `extends` (training): that folder's model plus the new tasks, only theirs trainable.
    Without it (loading a finished run, whose config lists every task): the layout, for `load_weights`.
    """
    if method == ADD_TASK and extends is not None:
        return extend_model(unet, extends, mtu_config)
    if method in ("mtu", "single-task", ADD_TASK):
        return upcycle(unet, mtu_config)
    if method in ADAPTER_METHODS:
        if adapter is None or adapter.method != method:
            raise ValueError(f"method {method!r} needs an AdapterSpec('{method}', ...)")
        model = add_task_layers(unet, mtu_config)
        _inject_adapters(model, adapter, mtu_config.target_modules)
        activate(model, model.task_names[0])
        return model
    if method == "full":
        model = add_task_layers(unet, mtu_config)
        model.base_model.requires_grad_(True)
        return model
    raise ValueError(f"unknown method {method!r}; valid options: {list(METHODS)}")


def save_trained(model: MTUModel, folder: str | Path, method: str, adapter: AdapterSpec | None = None) -> None:
    """Write a trained model: MTU weights (`save_pretrained`), adapters if any, and the method."""
    folder = Path(folder)
    model.save_pretrained(folder)
    if method in ADAPTER_METHODS:
        tensors = {name: p.detach().cpu().contiguous() for name, p in adapter_parameters(model.base_model).items()}
        save_file(tensors, folder / ADAPTERS_FILE)
    if method == "full":
        tensors = {name: p.detach().cpu().contiguous() for name, p in model.base_model.state_dict().items()}
        save_file(tensors, folder / DENOISER_FILE)
    info = {"method": method, "adapter": None if adapter is None else adapter.__dict__}
    (folder / METHOD_FILE).write_text(json.dumps(info, indent=1) + "\n")


def load_trained(unet: nn.Module, folder: str | Path) -> MTUModel:
    """Rebuild a model written by `save_trained` on a fresh base denoiser (modified in place)."""
    folder = Path(folder)
    if not (folder / METHOD_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {METHOD_FILE}: not a folder written by `mtu train`")
    info = json.loads((folder / METHOD_FILE).read_text())
    adapter = AdapterSpec(**info["adapter"]) if info.get("adapter") else None
    model = build_model(unet, info["method"], MTUConfig.load(folder), adapter)
    load_weights(model, folder, info["method"])
    return model


def load_trained_pipeline(folder: str | Path):
    """An `MTUPipeline` over a `save_trained` folder of any method, on the base model its config names.

    Adapter methods (lora / ia3) serve one task at a time: call `activate(pipeline.unet, task)` first and
    keep each batch to that task.
    """
    from diffusers import DiffusionPipeline

    from mtu.pipelines import MTUPipeline
    from mtu.training.components import model_folder

    folder = Path(folder)
    if not (folder / METHOD_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {METHOD_FILE}: pass the model/ folder of an `mtu train` run")
    base = MTUConfig.load(folder).base_model_name_or_path
    parts = DiffusionPipeline.from_pretrained(model_folder(base)).components
    return MTUPipeline.from_stock(parts, load_trained(parts["unet"], folder).eval())


@torch.no_grad()
def load_weights(model: MTUModel, folder: Path, method: str) -> None:
    """Load the weights of `save_trained` into a model of the same method and config (exact copy)."""
    from mtu.model import WEIGHTS_NAME

    model.load_mtu_state_dict(load_file(folder / WEIGHTS_NAME))
    if method in ADAPTER_METHODS:
        saved, own = load_file(folder / ADAPTERS_FILE), adapter_parameters(model.base_model)
        if set(saved) != set(own):
            raise ValueError(
                f"adapter weights in {folder} do not match the model ({len(saved)} saved, {len(own)} expected)"
            )
        for name, parameter in own.items():
            parameter.copy_(saved[name])
    if method == "full":
        model.base_model.load_state_dict(load_file(folder / DENOISER_FILE))
