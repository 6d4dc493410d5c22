"""The paper's two analyses, as pure functions plus matplotlib figures (no pyplot state, Agg canvas).

- Deviation analysis (Fig. 2): which layers move most when a denoiser is fully fine-tuned for a task.
  Each layer's deviation ||theta_ft - theta_pre|| is ranked (rank 1 = largest), ranks are averaged over
  tasks, then over the layers of each component type (FFN, self-attention, ...) at each depth.
- Router analysis (Fig. 5): how an MTU model's routers spread each task over the experts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# Row order of the deviation heatmap.
COMPONENTS = (
    "self-attention",
    "cross-attention",
    "ffn",
    "norm",
    "resnet conv",
    "time embedding",
    "proj in/out",
    "conv in/out",
    "up/down sampler",
    "other",
)
MEASURES = ("per_parameter", "raw")
# A parameter under one of these modules belongs to it as a whole (to_q/to_k/.., net.0.proj/net.2).
_GROUPS = ("attn1", "attn2", "attn", "ff", "time_embedding", "add_embedding")
_OUTPUT_LAYERS = ("conv_norm_out", "conv_out", "norm_out", "proj_out")


def layer_of(key: str) -> str:
    """The layer a parameter belongs to: its attention / FFN / embedding module, else its own module.

    >>> layer_of("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q.weight")
    'down_blocks.1.attentions.0.transformer_blocks.0.attn2'
    >>> layer_of("down_blocks.0.resnets.0.conv1.bias")
    'down_blocks.0.resnets.0.conv1'
    """
    parts = key.split(".")[:-1]
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in _GROUPS:
            return ".".join(parts[: index + 1])
    return ".".join(parts) or key


def component_of(layer: str) -> str:
    """Component type of a layer name (one of `COMPONENTS`)."""
    parts = layer.split(".")
    last = parts[-1]
    if last == "attn1" or (last == "attn" and "attn2" not in parts):
        return "self-attention"
    if last == "attn2":
        return "cross-attention"
    if last == "ff":
        return "ffn"
    if last.startswith("norm") or last == "conv_norm_out":
        return "norm"
    if last in ("time_embedding", "time_emb_proj", "add_embedding"):
        return "time embedding"
    if last in ("proj_in", "proj_out") and len(parts) > 1:
        return "proj in/out"
    if layer in ("conv_in", "conv_out"):
        return "conv in/out"
    if "downsamplers" in parts or "upsamplers" in parts:
        return "up/down sampler"
    if "resnets" in parts and last in ("conv1", "conv2", "conv_shortcut"):
        return "resnet conv"
    return "other"


def depth_of(layer: str) -> tuple[tuple[int, int, int], str]:
    """(sort key, label) of a layer's depth in UNet order: in, down blocks, mid, up blocks, out.

    A down/up block's unit ``i`` is its ``resnets.i`` with ``attentions.i``; samplers come last in a block.
    Transformer denoisers: ``transformer_blocks.i`` are units ``blk{i}``.
    """
    parts = layer.split(".")
    head = parts[0]
    if head in ("down_blocks", "up_blocks") and len(parts) > 2:
        stage, name = (1, "down") if head == "down_blocks" else (3, "up")
        block = int(parts[1])
        if parts[2] in ("downsamplers", "upsamplers"):
            return (stage, block, 10**6), f"{name}{block}.{'ds' if stage == 1 else 'us'}"
        unit = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
        return (stage, block, unit), f"{name}{block}.{unit}"
    if head == "mid_block":
        return (2, 0, 0), "mid"
    if head in ("transformer_blocks", "single_transformer_blocks") and len(parts) > 1:
        stage = 1 if head == "transformer_blocks" else 2
        return (stage, int(parts[1]), 0), f"{'blk' if stage == 1 else 'single'}{parts[1]}"
    if head in _OUTPUT_LAYERS:
        return (4, 0, 0), "out"
    return (0, 0, 0), "in"


@dataclass
class LayerDeviation:
    """One layer's deviation per task: raw = L2 norm of the change, per_parameter = raw / sqrt(numel) (RMS)."""

    name: str
    component: str
    depth: str
    depth_key: tuple[int, int, int]
    numel: int
    raw: dict[str, float] = field(default_factory=dict)
    per_parameter: dict[str, float] = field(default_factory=dict)
    rank: dict[str, float] = field(default_factory=dict)
    partial: bool = False  # a grown tensor (e.g. conv_in with extra input channels): only the shared slice compared

    @property
    def mean_rank(self) -> float:
        return float(np.mean(list(self.rank.values())))


def _change(pre: torch.Tensor, ft: torch.Tensor, key: str) -> tuple[torch.Tensor, bool]:
    if pre.shape == ft.shape:
        return ft.double() - pre.double(), False
    if pre.ndim == ft.ndim and all(a <= b for a, b in zip(pre.shape, ft.shape)):
        shared = ft[tuple(slice(0, size) for size in pre.shape)]
        return shared.double() - pre.double(), True
    raise ValueError(f"{key}: pre-trained shape {tuple(pre.shape)} and fine-tuned {tuple(ft.shape)} cannot be compared")


def layer_deviations(
    pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor]
) -> dict[str, tuple[float, int, bool]]:
    """Per layer: (L2 norm of theta_ft - theta_pre over all its parameters, numel, partial)."""
    only_pre, only_ft = sorted(set(pretrained) - set(finetuned)), sorted(set(finetuned) - set(pretrained))
    if only_pre or only_ft:
        raise ValueError(
            f"the state dicts differ: {len(only_pre)} keys only in the pre-trained one (e.g. {only_pre[:3]}), "
            f"{len(only_ft)} only in the fine-tuned one (e.g. {only_ft[:3]}); pass two states of one architecture"
        )
    squares: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    partial: dict[str, bool] = defaultdict(bool)
    for key, pre in pretrained.items():
        if not torch.is_floating_point(pre):
            continue  # step counters and the like
        delta, grown = _change(pre, finetuned[key], key)
        layer = layer_of(key)
        squares[layer] += float(delta.square().sum())
        counts[layer] += delta.numel()
        partial[layer] |= grown
    return {layer: (math.sqrt(squares[layer]), counts[layer], partial[layer]) for layer in squares}


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1 for the largest value; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    ranks = np.empty(len(values))
    ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


@dataclass
class DeviationAnalysis:
    """Layers with deviations and ranks per task; `measure` is what the ranks sort by."""

    layers: list[LayerDeviation]
    measure: str
    tasks: list[str]

    def component_ranks(self) -> dict[str, float]:
        """Mean rank per component type (over its layers' task-averaged ranks), best (lowest) first."""
        groups: dict[str, list[float]] = defaultdict(list)
        for layer in self.layers:
            groups[layer.component].append(layer.mean_rank)
        return dict(sorted(((name, float(np.mean(ranks))) for name, ranks in groups.items()), key=lambda item: item[1]))

    def grid(self) -> tuple[list[str], list[str], np.ndarray]:
        """(component rows, depth columns in UNet order, mean-rank matrix with NaN where a depth has none)."""
        depths = sorted({(layer.depth_key, layer.depth) for layer in self.layers})
        columns = [label for _, label in depths]
        rows = [name for name in COMPONENTS if any(layer.component == name for layer in self.layers)]
        cells: dict[tuple[str, str], list[float]] = defaultdict(list)
        for layer in self.layers:
            cells[layer.component, layer.depth].append(layer.mean_rank)
        matrix = np.full((len(rows), len(columns)), np.nan)
        for (component, depth), ranks in cells.items():
            matrix[rows.index(component), columns.index(depth)] = np.mean(ranks)
        return rows, columns, matrix

    def table(self) -> str:
        """Mean rank per component type, one line each (lower = larger deviation)."""
        counts = defaultdict(int)
        for layer in self.layers:
            counts[layer.component] += 1
        lines = [
            f"mean rank by component ({self.measure} deviation, {len(self.layers)} layers, "
            f"tasks: {', '.join(self.tasks)})"
        ]
        lines += [f"  {name:<16} {rank:7.1f}  ({counts[name]} layers)" for name, rank in self.component_ranks().items()]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Heatmap PNG of mean rank by component type (rows) and depth (columns), like the paper's Fig. 2."""
        rows, columns, matrix = self.grid()
        figure = _figure(max(6.0, 0.45 * len(columns) + 2.5), 0.45 * len(rows) + 1.6)
        axes = figure.add_subplot()
        image = axes.imshow(np.ma.masked_invalid(matrix), cmap="viridis_r", aspect="auto")
        axes.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
        axes.set_yticks(range(len(rows)), rows, fontsize=8)
        axes.set_xlabel("depth (UNet order)")
        axes.set_title(f"mean deviation rank ({self.measure}; 1 = largest change)", fontsize=9)
        figure.colorbar(image, ax=axes, label="mean rank")
        return _save(figure, path)


def deviation_analysis(
    pretrained: Mapping[str, torch.Tensor],
    finetuned: Mapping[str, Mapping[str, torch.Tensor]],
    measure: str = "per_parameter",
) -> DeviationAnalysis:
    """Rank every layer of each fine-tuned denoiser by how far it moved from the pre-trained one.

    Args:
        pretrained: the pre-trained denoiser's state dict.
        finetuned: task name -> that task's fully fine-tuned state dict (same keys; tensors that grew,
            such as conv_in with extra input channels, are compared on the pre-trained slice).
        measure: "per_parameter" ranks by the RMS change (L2 / sqrt(numel)), which does not favour large
            layers; "raw" ranks by the plain L2 norm, the paper's ||theta_ft - theta_pre||. Both are recorded.

    Returns:
        A `DeviationAnalysis`; ``.table()`` and ``.component_ranks()`` give the mean rank per component type.
    """
    if not finetuned:
        raise ValueError("finetuned is empty: pass {task name: fine-tuned state dict}")
    return rank_deviations({task: layer_deviations(pretrained, state) for task, state in finetuned.items()}, measure)


def rank_deviations(
    deviations: Mapping[str, Mapping[str, tuple[float, int, bool]]], measure: str = "per_parameter"
) -> DeviationAnalysis:
    """`deviation_analysis` from per-task `layer_deviations` results (small enough to cache as JSON)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; valid options: {list(MEASURES)}")
    if not deviations:
        raise ValueError("deviations is empty: pass {task name: layer_deviations(pretrained, finetuned)}")
    layers: dict[str, LayerDeviation] = {}
    for task, per_layer in deviations.items():
        for name, (norm, numel, partial) in per_layer.items():
            key, label = depth_of(name)
            layer = layers.setdefault(name, LayerDeviation(name, component_of(name), label, key, numel))
            layer.raw[task], layer.per_parameter[task] = norm, norm / math.sqrt(max(numel, 1))
            layer.partial |= partial
        ordered = list(layers.values())
        for layer, rank in zip(ordered, average_ranks([getattr(layer, measure)[task] for layer in ordered])):
            layer.rank[task] = float(rank)
    return DeviationAnalysis(
        sorted(layers.values(), key=lambda layer: (layer.depth_key, layer.name)), measure, list(deviations)
    )


@dataclass
class RouterAnalysis:
    """Router weights stacked as (layers, tasks, experts), with per-task and per-expert summaries."""

    layers: list[str]
    tasks: list[str]
    weights: np.ndarray  # (L, T, N)
    specialist_ratio: float = 2.0

    @property
    def usage(self) -> np.ndarray:
        """(T, N): each task's mean weight per expert over the layers."""
        return self.weights.mean(axis=0)

    def top_experts(self) -> dict[str, tuple[int, float, float]]:
        """task -> (expert with the highest mean weight, that weight, its excess over uniform 1/N)."""
        uniform = 1.0 / self.weights.shape[-1]
        return {
            task: (int(row.argmax()), float(row.max()), float(row.max() - uniform))
            for task, row in zip(self.tasks, self.usage)
        }

    def specialists(self) -> dict[int, str]:
        """expert -> the task using it mostly: above uniform and `specialist_ratio` x any other task's use."""
        uniform, found = 1.0 / self.weights.shape[-1], {}
        for expert, column in enumerate(self.usage.T):
            order = np.argsort(-column)
            best, runner_up = column[order[0]], column[order[1]] if len(column) > 1 else 0.0
            if best > uniform and best >= self.specialist_ratio * runner_up:
                found[expert] = self.tasks[order[0]]
        return found

    def summary(self) -> str:
        """One line: each task's favourite expert and its margin over uniform, then the specialised experts."""
        n = self.weights.shape[-1]
        tops = "; ".join(
            f"{task}: expert {e} ({w:.2f}, {x:+.2f} vs 1/{n})" for task, (e, w, x) in self.top_experts().items()
        )
        specialists = self.specialists()
        tail = ", ".join(f"expert {e} -> {task}" for e, task in specialists.items()) if specialists else "none"
        return f"{tops} | specialised experts: {tail}"

    def plot(self, path: str | Path) -> Path:
        """One heatmap panel per task: rows = layers, columns = experts, colour = router weight."""
        num_layers, num_tasks, num_experts = self.weights.shape
        figure = _figure(1.2 + 1.6 * num_tasks + 0.25 * num_experts * num_tasks, 1.5 + 0.22 * num_layers)
        panels = figure.subplots(1, num_tasks, squeeze=False, sharey=True)[0]
        top = float(self.weights.max())
        for index, (axes, task) in enumerate(zip(panels, self.tasks)):
            image = axes.imshow(self.weights[:, index, :], cmap="magma", vmin=0.0, vmax=top, aspect="auto")
            axes.set_title(task, fontsize=9)
            axes.set_xticks(range(num_experts), [str(e) for e in range(num_experts)], fontsize=7)
            axes.set_xlabel("expert", fontsize=8)
        panels[0].set_yticks(range(num_layers), [short_layer_name(name) for name in self.layers], fontsize=6)
        figure.colorbar(image, ax=list(panels), label="router weight")
        return _save(figure, path)


def router_analysis(
    routing: Mapping[str, torch.Tensor], task_names: Sequence[str], specialist_ratio: float = 2.0
) -> RouterAnalysis:
    """Summarise `MTUModel.routing_weights()` (layer -> (num_tasks, num_experts), rows in task order).

    Args:
        routing: the router weights per layer.
        task_names: the row names (`MTUModel.task_names`).
        specialist_ratio: how many times its next task's use an expert's top task must use it to call
            the expert specialised.
    """
    if not routing:
        raise ValueError("routing is empty: pass MTUModel.routing_weights()")
    arrays = [np.asarray(torch.as_tensor(value).float().cpu()) for value in routing.values()]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"expected one (num_tasks, num_experts) shape for every layer, got {sorted(shapes)}")
    if arrays[0].shape[0] != len(task_names):
        raise ValueError(f"the weights have {arrays[0].shape[0]} task rows but {len(task_names)} task names were given")
    return RouterAnalysis(list(routing), list(task_names), np.stack(arrays), specialist_ratio)


def short_layer_name(layer: str) -> str:
    """'down_blocks.1.attentions.0.transformer_blocks.0.ff' -> 'down1.a0.t0', to keep figure labels legible."""
    for long, short in (
        ("down_blocks.", "down"),
        ("up_blocks.", "up"),
        ("mid_block", "mid"),
        (".attentions.", ".a"),
        (".transformer_blocks.", ".t"),
        ("transformer_blocks.", "t"),
    ):
        layer = layer.replace(long, short)
    return layer.removesuffix(".ff")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=150)
    return path
