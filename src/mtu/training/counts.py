"""Parameter accounting: how many parameters each method trains, counted on a weightless (meta) copy.

`mtu train --dry-run` prints `format_counts`; LoRA's rank "auto" is the rank whose count is closest to
MTU's (`parameter_counts`), so the baselines are compared at equal trainable parameters.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from mtu.baseline_models import AdapterSpec, ffn_linears
from mtu.config import MTUConfig, TaskSpec
from mtu.methods import Method
from mtu.training.extend import ADD_TASK, extended_config
from mtu.training.methods import build_model
from mtu.upcycling import add_task_layers, upcycle
from mtu.utils.modules import count_parameters


def trainable_count(model: nn.Module) -> int:
    return count_parameters(model, trainable=True)


def meta_unet(unet_config) -> nn.Module:
    """A weightless copy of a denoiser (meta device): enough to count parameters of any method."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(unet_config)


def parameter_counts(unet_config, mtu_config: MTUConfig, rank: int | str = "auto", alpha: float | None = None) -> dict:
    """Trainable parameters of every method for this base model and these tasks (built on the meta device).

    Returns:
        {"mtu": n, "lora": n, "lora_rank": r, "ia3": n, "single-task": {task: n}}; with rank "auto", r is
        the LoRA rank whose count is closest to MTU's.
    """
    counts: dict = {"mtu": trainable_count(build_model(meta_unet(unet_config), Method.MTU, mtu_config))}
    task_layers = trainable_count(add_task_layers(meta_unet(unet_config), mtu_config))
    inputs, outputs = ffn_linears(meta_unet(unet_config), mtu_config.target_modules)
    modules = dict(meta_unet(unet_config).named_modules())
    per_rank = len(mtu_config.tasks) * sum(modules[n].in_features + modules[n].out_features for n in inputs + outputs)
    if rank == "auto":
        rank = max(1, round((counts["mtu"] - task_layers) / per_rank))
    counts["lora_rank"] = rank
    lora = build_model(meta_unet(unet_config), Method.LORA, mtu_config, AdapterSpec(Method.LORA, rank, alpha))
    counts["lora"] = trainable_count(lora)
    ia3 = build_model(meta_unet(unet_config), Method.IA3, mtu_config, AdapterSpec(Method.IA3))
    counts["ia3"] = trainable_count(ia3)
    counts["single-task"] = {
        task.name: trainable_count(build_model(meta_unet(unet_config), Method.MTU, _one_task(mtu_config, task)))
        for task in mtu_config.tasks
    }
    return counts


def _one_task(mtu_config: MTUConfig, task: TaskSpec) -> MTUConfig:
    return replace(mtu_config, tasks=[task])


def format_counts(counts: dict, method: str) -> str:
    """The dry-run table: trainable parameters per method, the configured one marked."""
    rows = [
        (Method.MTU, "mtu", counts["mtu"]),
        (Method.LORA, f"lora (rank {counts['lora_rank']})", counts["lora"]),
        (Method.IA3, "ia3", counts["ia3"]),
    ]
    rows += [(Method.SINGLE_TASK, f"single-task ({task})", n) for task, n in counts["single-task"].items()]
    single_total = sum(counts["single-task"].values())
    rows.append((None, f"single-task, all {len(counts['single-task'])} models", single_total))
    lines = [f"{'method':<32}{'trainable parameters':>22}"]
    for row_method, name, count in rows:
        marker = "  <- this config" if row_method is not None and row_method == method else ""
        lines.append(f"{name:<32}{count:>22,}{marker}")
    ratio = counts["lora"] / max(counts["mtu"], 1)
    lines.append(f"lora / mtu = {ratio:.3f} (rank chosen to match MTU's count as closely as possible)")
    return "\n".join(lines)


def extend_dry_run(config, unet_config) -> str:
    """What an add-task run trains and what it leaves frozen (counted on the meta device, no weights)."""
    model = upcycle(meta_unet(unet_config), extended_config(config))
    new = sum(p.numel() for task in config.task_names for p in model.task_parameters(task))
    frozen = count_parameters(model, trainable=True) - new
    served = model.task_names[: len(model.task_names) - len(config.tasks)]
    return (
        f"{config.model}, adding {config.task_names} to {config.extends} (serving {served})\n"
        f"{ADD_TASK} trains {new:,} parameters (the new tasks' embeddings, input convs and norms); "
        f"{frozen:,} MTU parameters (experts, routers, the served tasks' parts) stay frozen"
    )
