"""Turn a diffusers denoiser into an MTU model: find -> check -> replace -> mark trainable.

Everything is checked before the model is touched, so a failed `upcycle` never leaves it
half-converted. `mtu.loading.load` (`mtu.load`) re-applies the same injection from a saved config, then
loads the weights.
"""

from __future__ import annotations

import dataclasses
import re

from diffusers.models.attention import FeedForward
from torch import nn

from mtu.config import MTUConfig
from mtu.layers import MTUFeedForward, TaskContext, TaskInputConv, TaskLayerNorm
from mtu.layers.experts import check_feedforward, expert_count_problem, feedforward_hidden_size
from mtu.model import MTU_LAYER_TYPES, MTUModel
from mtu.utils.modules import replace_submodule

# Input layers that see the noisy latent (and, per task, the conditioning channels).
INPUT_CONV_NAMES = ("conv_in", "pos_embed.proj")

# (block class, FFN attribute) -> attribute of the norm applied right before that FFN.
PRE_FFN_NORMS = {
    ("BasicTransformerBlock", "ff"): "norm3",
    ("FreeNoiseTransformerBlock", "ff"): "norm3",
    ("TemporalBasicTransformerBlock", "ff"): "norm3",
    ("JointTransformerBlock", "ff"): "norm2",
    ("JointTransformerBlock", "ff_context"): "norm2_context",
}


def find_feedforwards(model: nn.Module, target_modules: list[str] | None = None) -> list[str]:
    """Qualified names of the diffusers `FeedForward`s to upcycle (all of them when `target_modules` is None)."""
    names = [name for name, module in model.named_modules() if isinstance(module, FeedForward)]
    if target_modules is None:
        return names
    patterns = [re.compile(pattern) for pattern in target_modules]
    return [name for name in names if any(pattern.fullmatch(name) for pattern in patterns)]


def find_input_conv(model: nn.Module) -> str:
    """Name of the layer that plays `conv_in`'s role: UNet `conv_in`, or a transformer's patch projection."""
    for name in INPUT_CONV_NAMES:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError(
        f"{type(model).__name__} has no input conv at any of {list(INPUT_CONV_NAMES)}; "
        "MTU needs one to give each task its own input channels"
    )


def find_pre_ffn_norm(model: nn.Module, feedforward_name: str) -> str | None:
    """Name of the affine LayerNorm right before this FFN, or None when there is none to specialise.

    SD3 and PixArt blocks normalise without affine weights (AdaLN modulation comes from the timestep),
    so on those models the per-task parts are the experts, routers and the input projection only.
    """
    parent_name, _, attribute = feedforward_name.rpartition(".")
    block = model.get_submodule(parent_name) if parent_name else model
    norm_attribute = PRE_FFN_NORMS.get((type(block).__name__, attribute))
    if norm_attribute == "norm3" and getattr(block, "norm_type", None) == "ada_norm_single":
        norm_attribute = "norm2"  # PixArt blocks apply norm2 before the FFN
    norm = getattr(block, norm_attribute, None) if norm_attribute else None
    if isinstance(norm, nn.LayerNorm) and norm.elementwise_affine:
        return f"{parent_name}.{norm_attribute}" if parent_name else norm_attribute
    return None


def _check(model: nn.Module, config: MTUConfig, targets: list[str], experts: bool = True) -> None:
    if any(isinstance(module, MTU_LAYER_TYPES) for module in model.modules()):
        raise ValueError("this model is already upcycled (upcycle modifies it in place): pass a fresh base model")
    if not targets:
        available = find_feedforwards(model)
        raise ValueError(
            f"no FeedForward matched target_modules={config.target_modules}; "
            f"the model has {len(available)} FeedForwards, e.g. {available[:3]}"
        )
    problems = []
    for name in targets:
        problems += check_feedforward(name, model.get_submodule(name))
    if problems:
        raise ValueError("cannot upcycle:\n  " + "\n  ".join(problems))
    sizes = [feedforward_hidden_size(model.get_submodule(name)) for name in targets]
    problem = expert_count_problem(sizes, config.num_experts) if experts else None
    if problem:
        raise ValueError(problem)
    find_input_conv(model)


def _mark_trainable(model: MTUModel) -> None:
    """Freeze everything, then unfreeze by module type (never by name: a user module may be called 'router')."""
    model.requires_grad_(False)
    model.task_embeddings.requires_grad_(True)
    for module in model.base_model.modules():
        if isinstance(module, MTU_LAYER_TYPES):
            module.requires_grad_(True)


def upcycle(model: nn.Module, config: MTUConfig) -> MTUModel:
    """Upcycle a diffusers denoiser in place into a function-preserving MTU model.

    Every targeted `FeedForward` becomes an `MTUFeedForward` (experts + router), the affine norm before
    it becomes a `TaskLayerNorm`, and the input conv becomes a `TaskInputConv`. Only these and the task
    embeddings train. Right after upcycling, every task reproduces the base model's output.

    Args:
        model: a `UNet2DConditionModel`, `PixArtTransformer2DModel`, `SD3Transformer2DModel`, or any
            diffusers denoiser built from `FeedForward` blocks with a `conv_in` or `pos_embed.proj`.
        config: tasks, number of experts, router sizes, targets.

    Returns:
        The `MTUModel` wrapping `model`; call it with `task=`.

    Example:
        >>> model = mtu.upcycle(unet, mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=4))
        >>> model.parameter_report()
    """
    return _inject(model, config, experts=True)


def add_task_layers(model: nn.Module, config: MTUConfig) -> MTUModel:
    """Give a denoiser MTU's per-task norms and input convs only; its FFNs stay plain `FeedForward`s.

    The LoRA / IA3 baselines use this: they train adapters on the FFNs plus exactly the task-specific
    input layers and norms MTU trains, so the comparison isolates the experts. `config.num_experts` and
    the router sizes are ignored; the task embedding exists (the `MTUModel` API needs it) but is frozen.
    Save the result with `save_pretrained`; restore it with `add_task_layers` + `load_mtu_state_dict`
    (`mtu.load` re-creates experts and so does not apply).
    """
    model = _inject(model, config, experts=False)
    model.task_embeddings.requires_grad_(False)
    return model


def _name_or_path(model: nn.Module) -> str | None:
    """Where diffusers loaded `model` from (a str: `from_pretrained` keeps a Path when given one)."""
    found = getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(found) if found else None


def _inject(model: nn.Module, config: MTUConfig, experts: bool) -> MTUModel:
    targets = find_feedforwards(model, config.target_modules)
    _check(model, config, targets, experts)
    config = dataclasses.replace(
        config,
        tasks=list(config.tasks),
        base_model_class=type(model).__name__,
        base_model_name_or_path=config.base_model_name_or_path or _name_or_path(model),
    )
    context = TaskContext()
    norms = [find_pre_ffn_norm(model, name) for name in targets]
    for name in targets if experts else []:
        layer = MTUFeedForward(
            model.get_submodule(name),
            config.num_experts,
            config.task_embedding_dim,
            config.router_hidden_dim,
            context,
            router_bias=config.router_bias,
            gate_dropout=config.gate_dropout,
        )
        replace_submodule(model, name, layer)
    for name in filter(None, norms):
        replace_submodule(model, name, TaskLayerNorm(model.get_submodule(name), config.task_names, context))
    input_name = find_input_conv(model)
    replace_submodule(model, input_name, TaskInputConv(model.get_submodule(input_name), config.tasks, context))
    mtu_model = MTUModel(model, config, context, input_name)
    _mark_trainable(mtu_model)
    return mtu_model
