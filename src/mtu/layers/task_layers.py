"""Per-task copies of the layers whose job differs by task: the pre-FFN norm and the input layer.

Both start as copies of the pre-trained layer, so an untrained MTU model is the base model for
every task (the extra input channels start at zero).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mtu.config import TaskSpec
from mtu.layers.routing import TaskContext


class TaskLayerNorm(nn.Module):
    """One affine `LayerNorm` per task."""

    def __init__(self, norm: nn.LayerNorm, task_names: list[str], context: TaskContext) -> None:
        super().__init__()
        if not norm.elementwise_affine:
            raise ValueError("a LayerNorm without affine weights has nothing to specialise per task")
        self.task_names = list(task_names)
        self.norms = nn.ModuleDict({name: copy.deepcopy(norm) for name in self.task_names})
        self._context = context

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch = self._context.current(hidden_states.shape[0])
        return batch.map_runs(hidden_states, lambda run, task, rows: self.norms[self.task_names[task]](rows))

    def fold(self, task: str) -> nn.LayerNorm:
        return copy.deepcopy(self.norms[task])


def widen_conv(conv: nn.Conv2d, extra_channels: int) -> nn.Conv2d:
    """Copy of `conv` taking `extra_channels` more inputs, whose weights start at zero."""
    widened = nn.Conv2d(
        conv.in_channels + extra_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        widened.weight.zero_()
        widened.weight[:, : conv.in_channels].copy_(conv.weight)
        if conv.bias is not None:
            widened.bias.copy_(conv.bias)
    return widened


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
        self._context = context

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
