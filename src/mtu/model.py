"""`MTUModel`: a diffusers denoiser whose FFNs were upcycled, called with a task.

It wraps the (modified in place) base model the way peft's `PeftModel` does: attributes it does not
have (`config`, `dtype`, `add_embedding`, ...) are the base model's, so pipelines can use it as a
drop-in denoiser as long as they pass `task=`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from mtu.config import (
    CONFIG_NAME,
    LEGACY_EMBEDDING_KEY,
    WEIGHTS_NAME,
    MTUConfig,
    TaskSpec,
    as_task_spec,
)
from mtu.layers import MTUFeedForward, TaskBatch, TaskContext, TaskInputConv, TaskLayerNorm
from mtu.layers.adapters import has_adapters
from mtu.utils.modules import count_parameters, replace_submodule
from mtu.utils.tensor_files import save_tensors

MTU_LAYER_TYPES = (MTUFeedForward, TaskLayerNorm, TaskInputConv)

TaskArgument = str | Sequence[str] | Sequence[int] | torch.Tensor


def concat_task_inputs(samples: Sequence[torch.Tensor]) -> torch.Tensor:
    """Batch inputs of tasks with different channel counts: zero-pad channels to the largest, then concatenate.

    Example: a t2i latent (B1, 4, H, W) and an inpaint input (B2, 9, H, W) become (B1 + B2, 9, H, W);
    call the model with `task=["t2i"] * B1 + ["inpaint"] * B2`. Each task reads only its own channels.
    """
    channels = max(sample.shape[1] for sample in samples)
    padded = [nn.functional.pad(sample, (0, 0, 0, 0, 0, channels - sample.shape[1])) for sample in samples]
    return torch.cat(padded)


@dataclass
class ParameterReport:
    """Parameter counts of an MTU model, by component."""

    total: int
    trainable: int
    components: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{'component':<20}{'parameters':>14}"]
        lines += [f"{name:<20}{count:>14,}" for name, count in self.components.items()]
        share = 100 * self.trainable / max(self.total, 1)
        lines.append(f"{'total':<20}{self.total:>14,}")
        lines.append(f"{'trainable':<20}{self.trainable:>14,}  ({share:.2f}%)")
        return "\n".join(lines)


class MTUModel(nn.Module):
    """A multi-task denoiser made by `mtu.upcycle`; build it with `upcycle` or `mtu.load`, not directly."""

    def __init__(self, base_model: nn.Module, config: MTUConfig, context: TaskContext, input_conv_name: str) -> None:
        super().__init__()
        self.base_model = base_model
        self.mtu_config = config
        reference = next(base_model.parameters())
        # One parameter per task, not one shared table: a task can then train alone (its own AdamW state and
        # weight decay; the others' rows are not even in the optimizer). Drawn as one (T, E) normal table, as
        # nn.Embedding did, so a seeded upcycle starts from the same embeddings as before the split.
        table = nn.init.normal_(
            torch.empty(len(config.tasks), config.task_embedding_dim, device=reference.device, dtype=reference.dtype)
        )
        pairs = [(name, nn.Parameter(row.clone())) for name, row in zip(config.task_names, table)]
        self.task_embeddings = nn.ParameterDict(pairs)  # pairs, not a dict: a plain dict would be sorted by name
        self._context = context
        self._input_conv_name = input_conv_name
        self._signature = inspect.signature(base_model.forward)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @property
    def task_names(self) -> list[str]:
        return self.mtu_config.task_names

    @property
    def input_conv(self) -> TaskInputConv:
        return self.base_model.get_submodule(self._input_conv_name)

    def task_in_channels(self, task: str) -> int:
        """Channels the denoiser input has for `task`: the latent's plus the task's conditioning channels."""
        self.mtu_config.task_index(task)
        return self.input_conv.in_channels(task)

    def add_task(self, task: TaskSpec | str | dict, generator: torch.Generator | None = None) -> TaskSpec:
        """Serve one more task (appended: every existing task keeps its id, weights and outputs exactly).

        The new task gets its own embedding (standard normal from `generator`, as every task's at upcycling),
        input conv (the pre-trained conv, its extra channels at zero) and pre-FFN norms (copies of the
        pre-trained ones). Experts and routers are shared and left as they are. The new parts are trainable;
        to train only them, freeze everything else (`task_parameters`; `mtu train` method add-task does).
        """
        spec = as_task_spec(task)
        if spec.name in self.task_names:
            raise ValueError(f"this model already serves {spec.name!r} ({self.task_names}); pick another name")
        config = dataclasses.replace(self.mtu_config, tasks=[*self.mtu_config.tasks, spec])
        reference = self.embedding_list()[0]
        embedding = torch.randn(config.task_embedding_dim, generator=generator).to(reference)
        for module in self.base_model.modules():
            if isinstance(module, TaskLayerNorm):
                module.add_task(spec.name)
            elif isinstance(module, TaskInputConv):
                module.add_task(spec)
        self.task_embeddings[spec.name] = nn.Parameter(embedding)
        self.mtu_config = config
        return spec

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The parameters `task` alone uses: its embedding, input conv and norms (experts and routers are shared)."""
        self.mtu_config.task_index(task)
        found = [self.task_embeddings[task]]
        for module in self.base_model.modules():
            if isinstance(module, TaskLayerNorm):
                found += module.norms[task].parameters()
            elif isinstance(module, TaskInputConv):
                found += module.convs[task].parameters()
        return found

    def forward(self, *args: Any, task: TaskArgument | None = None, **kwargs: Any) -> Any:
        """Run the base model's forward for `task`: a name, or one name / id per sample (a mixed-task batch).

        All other arguments are the base model's (e.g. `sample, timestep, encoder_hidden_states,
        added_cond_kwargs=..., return_dict=...`). The input carries each task's own channel count; a batch
        mixing channel counts is zero-padded to the largest (`mtu.concat_task_inputs`).
        """
        arguments = self._signature.bind_partial(*args, **kwargs).arguments
        sample = arguments.get("sample", arguments.get("hidden_states"))
        if not isinstance(sample, torch.Tensor):
            raise ValueError(f"{type(self.base_model).__name__} forward got no `sample`/`hidden_states` tensor")
        batch = self.task_batch(task, sample.shape[0], sample.device)
        self._check_inputs(arguments, sample, batch)
        with self._context.activate(batch):
            return self.base_model(*args, **kwargs)

    def task_ids(self, task: TaskArgument | None, batch_size: int) -> list[int]:
        """One task id per sample, validated; ValueError naming the valid tasks otherwise."""
        if task is None:
            raise ValueError(f"pass task=... to the MTU model: one of {self.task_names}, or one per sample")
        if isinstance(task, str):
            return [self.mtu_config.task_index(task)] * batch_size
        if isinstance(task, torch.Tensor):
            if task.is_floating_point() or task.is_complex() or task.dim() > 1:
                raise ValueError(
                    f"task ids must be a 1-D integer tensor, got dtype {task.dtype} and shape {tuple(task.shape)}"
                )
            task = task.reshape(-1).tolist()
        ids = [self.mtu_config.task_index(item) if isinstance(item, str) else item for item in task]
        if len(ids) != batch_size:
            raise ValueError(
                f"got {len(ids)} tasks for a batch of {batch_size} samples; pass one task per sample "
                "(classifier-free guidance duplicates the batch: repeat the tasks the same way) or a single name"
            )
        bad = [item for item in ids if not isinstance(item, int) or not 0 <= item < len(self.task_names)]
        if bad:
            raise ValueError(
                f"task ids {bad[:5]} out of range: valid ids are 0..{len(self.task_names) - 1} for {self.task_names}"
            )
        return ids

    def task_batch(self, task: TaskArgument | None, batch_size: int, device: torch.device) -> TaskBatch:
        return TaskBatch.from_ids(self.task_ids(task, batch_size), self.embedding_list(), device)

    def embedding_list(self) -> list[nn.Parameter]:
        """The task embeddings in task-id order."""
        return [self.task_embeddings[name] for name in self.task_names]

    def _check_inputs(self, arguments: dict[str, Any], sample: torch.Tensor, batch: TaskBatch) -> None:
        present = sorted({task for task, _ in batch.runs})
        expected = {self.task_names[t]: self.input_conv.in_channels(self.task_names[t]) for t in present}
        needed = max(expected.values())
        if sample.shape[1] != needed:
            padded = (
                ""
                if len(set(expected.values())) == 1
                else " (a mixed batch is zero-padded to the largest; see mtu.concat_task_inputs)"
            )
            raise ValueError(
                f"the input has {sample.shape[1]} channels but {expected} expects {needed}{padded}; "
                "concatenate each task's conditioning latents after the noisy latent"
            )
        batch_size = sample.shape[0]
        tensors = {name: arguments.get(name) for name in ("encoder_hidden_states", "pooled_projections", "timestep")}
        tensors.update({f"added_cond_kwargs[{k!r}]": v for k, v in (arguments.get("added_cond_kwargs") or {}).items()})
        for name, value in tensors.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] not in (1, batch_size):
                raise ValueError(f"{name} has batch size {value.shape[0]} but the sample has {batch_size}")

    def enable_gradient_checkpointing(self) -> None:
        """Gradient checkpointing that recomputes each block with the tasks of its own forward."""
        context = self._context

        def checkpoint_with_tasks(module: nn.Module, *args: Any) -> Any:
            batch = context.batch

            def run(*inputs: Any) -> Any:
                with context.activate(batch):
                    return module(*inputs)

            return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)

        self.base_model.enable_gradient_checkpointing(checkpoint_with_tasks)

    @torch.no_grad()
    def routing_weights(self) -> dict[str, torch.Tensor]:
        """Router weights per upcycled FFN: layer name -> (num_tasks, num_experts), rows in task order."""
        embeddings = torch.stack(self.embedding_list())
        return {
            name: module.expert_weights(embeddings).float().cpu()
            for name, module in self.base_model.named_modules()
            if isinstance(module, MTUFeedForward)
        }

    def router_z_loss(self, tasks: Sequence[str]) -> torch.Tensor:
        """ST-MoE's router z-loss for a batch of `tasks` (one name per sample): the mean over upcycled FFNs and
        samples of logsumexp(logits)^2. A router's input is only its task's embedding, so this needs no forward."""
        names = sorted(set(tasks))
        embeddings = torch.stack([self.task_embeddings[name] for name in names])
        counts = torch.tensor([list(tasks).count(name) for name in names], dtype=embeddings.dtype)
        routers = [module.router for module in self.base_model.modules() if isinstance(module, MTUFeedForward)]
        if not routers:
            return embeddings.new_zeros(())
        per_task = torch.stack([router.logits(embeddings).logsumexp(dim=-1) ** 2 for router in routers]).mean(dim=0)
        return (per_task * counts.to(per_task.device)).sum() / counts.sum()

    def parameter_report(self) -> ParameterReport:
        """Total and trainable parameters, split into experts, routers, task parts and the frozen rest."""
        counts: dict[str, int] = defaultdict(int)
        counts["task_embeddings"] = count_parameters(self.task_embeddings)
        for module in self.base_model.modules():
            if isinstance(module, MTUFeedForward):
                counts["experts (FFN)"] += count_parameters(module.base_layer)
                counts["routers"] += count_parameters(module.router)
            elif isinstance(module, TaskLayerNorm):
                counts["task_norms"] += count_parameters(module)
            elif isinstance(module, TaskInputConv):
                counts["task_input_layers"] += count_parameters(module)
        total = count_parameters(self)
        counts["frozen (base)"] = total - sum(counts.values())
        trainable = count_parameters(self, trainable=True)
        return ParameterReport(total=total, trainable=trainable, components=dict(counts))

    def mtu_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights MTU owns (experts, routers, task embeddings, norms, input convs); nothing frozen."""
        state = {f"task_embeddings.{name}": self.task_embeddings[name] for name in self.task_names}
        for name, module in self.base_model.named_modules():
            if isinstance(module, MTU_LAYER_TYPES):
                state.update({f"{name}.{key}": value for key, value in module.state_dict(keep_vars=True).items()})
        return state

    @torch.no_grad()
    def load_mtu_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy saved MTU weights in (exact match of keys and shapes); the old one-table layout is converted."""
        state_dict = self._split_embedding_table(state_dict)
        own = self.mtu_state_dict()
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"MTU weights do not match this model: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); were they saved from another base model or "
                "config?"
            )
        for key, target in own.items():
            if target.shape != state_dict[key].shape:
                raise ValueError(
                    f"{key}: saved shape {tuple(state_dict[key].shape)}, model shape {tuple(target.shape)}"
                )
            target.copy_(state_dict[key])

    def _split_embedding_table(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights saved before per-task embeddings hold one (T, E) `task_embedding.weight`: row t is task t's."""
        if LEGACY_EMBEDDING_KEY not in state_dict:
            return state_dict
        state_dict = dict(state_dict)
        table = state_dict.pop(LEGACY_EMBEDDING_KEY)
        if table.dim() != 2 or table.shape[0] != len(self.task_names):
            raise ValueError(
                f"{LEGACY_EMBEDDING_KEY}: saved shape {tuple(table.shape)}, expected one row per task of "
                f"{self.task_names}"
            )
        state_dict.update({f"task_embeddings.{name}": row for name, row in zip(self.task_names, table)})
        return state_dict

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write only the MTU weights (`mtu_model.safetensors`) and `mtu_config.json` (with the base reference).

        Files are written to a temp name and renamed, so an interrupted save never leaves a half file.
        """
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / WEIGHTS_NAME, self.mtu_state_dict(), {"format": "pt", "mtu_config": CONFIG_NAME})
        self.mtu_config.save(folder / CONFIG_NAME)

    @torch.no_grad()
    def export(self, task: str) -> nn.Module:
        """An ordinary diffusers model of the base class for one task, routers folded (zero overhead).

        Its config's `in_channels` is set for the task, so `export(task).save_pretrained(dir)` writes a
        folder that stock diffusers loads (e.g. as the UNet of `StableDiffusionInstructPix2PixPipeline`).
        """
        self.mtu_config.task_index(task)
        if has_adapters(self.base_model):
            raise ValueError("this model's per-task adapters (lora / ia3) do not fold into one stock denoiser")
        embedding = self.task_embeddings[task]
        exported = copy.deepcopy(self.base_model)
        for name, module in list(exported.named_modules()):
            if isinstance(module, MTUFeedForward):
                folded = module.fold(embedding)
            elif isinstance(module, (TaskLayerNorm, TaskInputConv)):
                folded = module.fold(task)
            else:
                continue
            replace_submodule(exported, name, folded)
        if hasattr(exported, "register_to_config"):
            updates = {"in_channels": self.task_in_channels(task)}
            if exported.config.get("out_channels", 0) is None:
                updates["out_channels"] = exported.out_channels  # it defaulted to in_channels, which changes now
            exported.register_to_config(**updates)
        return exported.requires_grad_(True)  # like a model fresh from from_pretrained
