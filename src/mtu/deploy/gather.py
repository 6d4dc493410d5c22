"""One denoiser for every task with no router at inference: per-task weights gathered by a task-id tensor.

`MTUModel` picks each task's layers in Python (runs of same-task samples, a router MLP per FFN), which
a graph exporter cannot follow. Here everything that depends on the task is precomputed into small
tables indexed by a (B,) task-id tensor, so the whole forward is one static graph:

- each upcycled FFN: the router output is a function of the task alone, so its hidden-unit scales
  N * w_expert(task) become a (T, d_ff) table; the shared W_out is unscaled once ("W_base");
- each per-task LayerNorm: (T, D) weight and bias tables;
- the per-task input conv: (T, O, C_max, k, k) weights, narrower tasks zero-padded to the widest input.

It is built only from the model's public API: `export(task)` (the folded per-task denoisers) and
`routing_weights()`; whatever differs between the exports is what becomes a table.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtu.utils.modules import replace_submodule

# Largest relative difference tolerated between `export(task)`'s folded FFN weights and W_base x scales
# (rounding of float32 / 16-bit weights): a bigger one means the expert layout is not the contiguous
# blocks assumed here.
FOLD_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4}
FOLD_TOLERANCE_16BIT = 1e-2


class TaskIds:
    """The (B,) task ids of the running forward, shared by the gathering layers (a plain object, no state)."""

    def __init__(self) -> None:
        self.ids: torch.Tensor | None = None

    def per_sample(self, table: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Rows of a (T, D) table for each sample, shaped (B, 1, ..., 1, D) to broadcast over `like`."""
        if self.ids is None:
            raise RuntimeError("a gathering layer ran outside AllTaskDenoiser.forward (no task ids)")
        rows = table.index_select(0, self.ids)
        return rows.view(rows.shape[0], *[1] * (like.dim() - 2), rows.shape[-1])


class GatheredLayerNorm(nn.Module):
    """A LayerNorm whose affine weights are one row per task."""

    def __init__(self, norm: nn.LayerNorm, weights: torch.Tensor, biases: torch.Tensor | None, ids: TaskIds) -> None:
        super().__init__()
        self.normalized_shape, self.eps = tuple(norm.normalized_shape), norm.eps
        if len(self.normalized_shape) != 1:
            raise ValueError(f"per-task LayerNorms over {self.normalized_shape} are not supported (one dimension only)")
        self.weight = nn.Parameter(weights, requires_grad=False)  # (T, D)
        self.bias = None if biases is None else nn.Parameter(biases, requires_grad=False)
        self._ids = ids

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normalized = F.layer_norm(hidden_states, self.normalized_shape, eps=self.eps)
        output = normalized * self._ids.per_sample(self.weight, hidden_states)
        return output if self.bias is None else output + self._ids.per_sample(self.bias, hidden_states)


class GatheredConv2d(nn.Module):
    """Per-task input convs run as ONE conv with T x O output channels, then each sample keeps its task's O.

    A per-sample conv needs either a loop over tasks (not one graph) or a grouped conv whose group count
    is the batch size (a static attribute in ONNX). The input conv is a tiny share of a denoiser call (SD1.5 at
    512 px: 0.2 of 803 GFLOPs), so running it for 5 tasks (+0.1%) is the cheap way to one graph.
    """

    def __init__(self, conv: nn.Conv2d, weights: torch.Tensor, biases: torch.Tensor | None, ids: TaskIds) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or conv.groups != 1:
            raise ValueError(f"per-task input convs need padding_mode='zeros' and groups=1, got {conv}")
        self.tasks, self.out_channels = weights.shape[0], weights.shape[1]
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = nn.Parameter(weights.flatten(0, 1), requires_grad=False)  # (T * O, C_max, k, k)
        self.bias = None if biases is None else nn.Parameter(biases.flatten(), requires_grad=False)
        self.in_channels = weights.shape[2]
        self._ids = ids

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        if sample.shape[1] < self.in_channels:  # a batch of narrower tasks only: pad as a mixed batch would be
            sample = F.pad(sample, (0, 0, 0, 0, 0, self.in_channels - sample.shape[1]))
        every = F.conv2d(sample, self.weight, self.bias, self.stride, self.padding, self.dilation)
        batch, _, height, width = every.shape
        every = every.view(batch, self.tasks, self.out_channels, height, width)
        index = self._ids.ids.view(batch, 1, 1, 1, 1).expand(batch, 1, self.out_channels, height, width)
        return torch.gather(every, 1, index).squeeze(1)


class ScaledFeedForward(nn.Module):
    """A diffusers FeedForward with W_base and per-task hidden-unit scales: W_base (s_task * act(W_in x)) + b."""

    def __init__(self, feedforward: nn.Module, scales: torch.Tensor, ids: TaskIds) -> None:
        super().__init__()
        self.net = feedforward.net
        self.scales = nn.Parameter(scales, requires_grad=False)  # (T, d_ff)
        self._ids = ids

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        activation, dropout, proj_out, *tail = self.net
        hidden = dropout(activation(hidden_states))
        output = proj_out(hidden * self._ids.per_sample(self.scales, hidden))
        for module in tail:
            output = module(output)
        return output


class AllTaskDenoiser(nn.Module):
    """The denoiser of every task in one module: `forward(*args, task_ids=(B,) long, **kwargs)`.

    The other arguments are the base denoiser's; the sample has the widest task's channels (`in_channels`),
    narrower tasks zero-padded (`mtu.concat_task_inputs`), or fewer when every task of the batch takes fewer.
    """

    def __init__(self, denoiser: nn.Module, task_names: list[str], task_channels: list[int], ids: TaskIds) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.task_names = list(task_names)
        self.task_channels = list(task_channels)
        self.in_channels = max(task_channels)
        self._ids = ids

    @property
    def config(self) -> Any:
        return self.denoiser.config

    def forward(self, *args: Any, task_ids: torch.Tensor, **kwargs: Any) -> Any:
        self._ids.ids = task_ids
        try:
            return self.denoiser(*args, **kwargs)
        finally:
            self._ids.ids = None


@torch.no_grad()
def build_all_task_denoiser(model: nn.Module) -> AllTaskDenoiser:
    """Fold every task of an `MTUModel` into one `AllTaskDenoiser` (eval mode, weights frozen).

    Memory: the model's exports are made one task at a time; the result is one denoiser plus the tables.
    """
    names = list(model.mtu_config.task_names)
    routing = model.routing_weights()  # FFN name -> (T, N)
    skeleton = model.export(names[0]).eval().requires_grad_(False)
    reference = skeleton.state_dict()
    scales = {
        name: _hidden_scales(weights, reference[f"{name}.net.2.weight"].shape[1]) for name, weights in routing.items()
    }
    bases, varying = _compare_exports(model, names, reference, scales)
    ids = TaskIds()
    for name in routing:
        feedforward = skeleton.get_submodule(name)
        feedforward.net[2].weight.copy_(bases[name].to(feedforward.net[2].weight.dtype))
        replace_submodule(
            skeleton, name, ScaledFeedForward(feedforward, scales[name].to(feedforward.net[2].weight.dtype), ids)
        )
    for name in sorted({key.rpartition(".")[0] for key in varying}):
        tables = {
            attribute: _table(reference, varying, f"{name}.{attribute}", len(names)) for attribute in ("weight", "bias")
        }
        replace_submodule(skeleton, name, _gathered(name, skeleton.get_submodule(name), tables, ids))
    channels = [model.task_in_channels(task) for task in names]
    if hasattr(skeleton, "register_to_config") and "in_channels" in skeleton.config:
        skeleton.register_to_config(in_channels=max(channels))
    return AllTaskDenoiser(skeleton, names, channels, ids).eval()


def _compare_exports(model: nn.Module, names: list[str], reference: dict, scales: dict) -> tuple[dict, dict]:
    """W_base per upcycled FFN, and the other parameters whose value differs by task: {key: {task id: value}}.

    W_base = W_out(task) / s(task), column by column from the task whose scale of that hidden unit is largest:
    a trained router can put exactly 0 on an expert for some tasks (softmax underflow), and 0 / 0 there made
    NaN weights. A hidden unit that every task scales by 0 never reaches the output: its column is 0.
    Every task's folded W_out is checked against W_base x its scales.
    """
    ffn_keys = {f"{name}.net.2.weight": name for name in scales}
    sources = {name: scale.argmax(dim=0) for name, scale in scales.items()}  # (d_ff,) task per hidden unit
    bases: dict[str, torch.Tensor] = {}
    varying: dict[str, dict[int, torch.Tensor]] = {}
    for index, task in enumerate(names):
        state = reference if index == 0 else model.export(task).state_dict()
        for key, value in state.items():
            if key in ffn_keys:
                name = ffn_keys[key]
                _check_fold(key, value, reference[key], scales[name][index], scales[name][0], task)
                scale = scales[name][index]
                mine = (sources[name] == index) & (scale > 0)
                column = torch.where(mine, value.double() / torch.where(mine, scale, 1.0), 0.0)
                bases[name] = bases.get(name, 0.0) + column
            elif index and (value.shape != reference[key].shape or not torch.equal(value, reference[key])):
                varying.setdefault(key, {})[index] = value
        del state  # before the next export: one export's copy at a time (3.4 GB each at SD1.5 size)
    return bases, varying


def _hidden_scales(routing: torch.Tensor, hidden_size: int) -> torch.Tensor:
    """(T, N) router weights -> (T, d_ff) scales N * w_i over expert i's contiguous block of hidden units."""
    experts = routing.shape[1]
    return (experts * routing.double()).repeat_interleave(hidden_size // experts, dim=1)


def _check_fold(
    key: str, folded: torch.Tensor, first: torch.Tensor, scale: torch.Tensor, first_scale: torch.Tensor, task: str
) -> None:
    """W_out(task) = W_base s(task) and W_out(first) = W_base s(first), so W_out(task) s(first) = W_out(first) s(task).

    Checked in that cross-multiplied form: no division, whatever the router weights are.
    """
    expected = first.double() * scale
    error = ((folded.double() * first_scale - expected).norm() / expected.norm().clamp_min(1e-30)).item()
    if error > FOLD_TOLERANCE.get(folded.dtype, FOLD_TOLERANCE_16BIT):
        raise ValueError(
            f"{key}: export({task!r}) is not W_base x its router scales (relative error {error:.1e}); "
            "the expert layout changed and mtu.deploy.gather needs updating"
        )


def _table(reference: dict, varying: dict, key: str, tasks: int) -> torch.Tensor | None:
    """(T, ...) stack of a parameter over tasks; narrower conv inputs zero-padded to the widest."""
    if key not in reference:
        return None
    values = [varying.get(key, {}).get(index, reference[key]) for index in range(tasks)]
    widest = max(value.shape[1] if value.dim() == 4 else 0 for value in values)
    if widest:
        values = [F.pad(value, (0, 0, 0, 0, 0, widest - value.shape[1])) for value in values]
    return torch.stack(values)


def _gathered(name: str, module: nn.Module, tables: dict, ids: TaskIds) -> nn.Module:
    if isinstance(module, nn.LayerNorm):
        return GatheredLayerNorm(module, tables["weight"], tables["bias"], ids)
    if isinstance(module, nn.Conv2d):
        return GatheredConv2d(module, tables["weight"], tables["bias"], ids)
    raise ValueError(
        f"{name} ({type(module).__name__}) differs between tasks; mtu.deploy only gathers per-task LayerNorms, "
        "Conv2d input layers and upcycled FFNs"
    )
