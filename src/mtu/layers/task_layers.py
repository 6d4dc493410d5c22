"""Per-task copies of the layers whose job differs by task: the pre-FFN norm and the input layer.

Both start as copies of the pre-trained layer, so an untrained MTU model is the base model for
every task (the extra input channels start at zero). Each also keeps the pre-trained weights as
non-persistent buffers (not trained, not saved: `mtu.load` re-reads them from the base model), so a task
added after training (`MTUModel.add_task`) starts from the base's layer, not from another task's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mtu.config import TaskSpec
from mtu.layers.router import TaskContext


class TaskLayerNorm(nn.Module):
    """One affine `LayerNorm` per task."""

    def __init__(self, norm: nn.LayerNorm, task_names: list[str], context: TaskContext) -> None:
        super().__init__()
        if not norm.elementwise_affine:
            raise ValueError("a LayerNorm without affine weights has nothing to specialise per task")
        self.task_names = list(task_names)
        self.norms = nn.ModuleDict({name: copy.deepcopy(norm) for name in self.task_names})
        self.register_buffer("base_weight", norm.weight.detach().clone(), persistent=False)
        self.register_buffer("base_bias", None if norm.bias is None else norm.bias.detach().clone(), persistent=False)
        self._context = context

    @torch.no_grad()
    def add_task(self, name: str) -> nn.LayerNorm:
        """A norm for a new task: a copy of the pre-trained one (trainable); the other tasks' are untouched."""
        norm = copy.deepcopy(next(iter(self.norms.values())))  # shape, eps, device and dtype of the others
        norm.weight.copy_(self.base_weight)
        if norm.bias is not None:
            norm.bias.copy_(self.base_bias)
        self.norms[name] = norm.requires_grad_(True)
        self.task_names.append(name)
        return norm

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch = self._context.current(hidden_states.shape[0])
        return batch.map_runs(hidden_states, lambda run, task, rows: self.norms[self.task_names[task]](rows))

    def fold(self, task: str) -> nn.LayerNorm:
        return copy.deepcopy(self.norms[task])


def widen_conv(conv: nn.Conv2d, extra_channels: int) -> nn.Conv2d:
    """Copy of `conv` taking `extra_channels` more inputs, whose weights start at zero."""
    return _conv_like(conv, conv.in_channels + extra_channels, conv.weight, conv.bias)


def _conv_like(like: nn.Conv2d, in_channels: int, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A conv of `like`'s geometry taking `in_channels` inputs: `weight` on the leading ones, zeros on the rest."""
    conv = nn.Conv2d(
        in_channels,
        like.out_channels,
        kernel_size=like.kernel_size,
        stride=like.stride,
        padding=like.padding,
        dilation=like.dilation,
        bias=bias is not None,
        padding_mode=like.padding_mode,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, : weight.shape[1]].copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


class TaskInputConv(nn.Module):
    """One input conv per task (UNet `conv_in`, or a transformer's patch-embedding projection).

    A mixed-task batch whose tasks take different channel counts arrives zero-padded to the largest
    count (see `mtu.concat_task_inputs`); each task's conv reads only its own leading channels.
    """

    def __init__(self, conv: nn.Conv2d, tasks: list[TaskSpec], context: TaskContext) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"the input conv has groups={conv.groups}; only groups=1 can be widened per task")
        self.task_names = [task.name for task in tasks]
        self.convs = nn.ModuleDict(
            {task.name: widen_conv(conv, task.input_channels(conv.in_channels) - conv.in_channels) for task in tasks}
        )
        self.register_buffer("base_weight", conv.weight.detach().clone(), persistent=False)
        self.register_buffer("base_bias", None if conv.bias is None else conv.bias.detach().clone(), persistent=False)
        self._context = context

    def base_conv(self) -> nn.Conv2d:
        """The pre-trained input conv, rebuilt from its kept weights (every task's own conv may have trained)."""
        like = next(iter(self.convs.values()))
        return _conv_like(like, self.base_weight.shape[1], self.base_weight, self.base_bias)

    def add_task(self, task: TaskSpec) -> nn.Conv2d:
        """A conv for a new task, initialised as at upcycling: the base's weights, zeros on its extra channels."""
        base = self.base_conv()
        conv = widen_conv(base, task.input_channels(base.in_channels) - base.in_channels)
        self.convs[task.name] = conv.to(device=self.base_weight.device)
        self.task_names.append(task.name)
        return conv

    def in_channels(self, task: str) -> int:
        return self.convs[task].in_channels

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        batch = self._context.current(sample.shape[0])

        def convolve(run: int, task: int, rows: torch.Tensor) -> torch.Tensor:
            conv = self.convs[self.task_names[task]]
            return conv(rows[:, : conv.in_channels])

        return batch.map_runs(sample, convolve)

    def fold(self, task: str) -> nn.Conv2d:
        return copy.deepcopy(self.convs[task])
