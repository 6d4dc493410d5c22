"""Sizes a model file asks for, checked before any tensor is made.

Loading builds the model from `mtu_config.json` first and copies the weights in after, so each size in that
file (router_hidden_dim, task_embedding_dim, num_experts, the task count, a custom task's channels, an
adapter's rank) is memory allocated on its word: `router_hidden_dim: 1000000000` asked for 256 GB in one
tensor. A downloaded folder must not be able to do that. `mtu.config.check_bounds` refuses absurd values whenever
an `MTUConfig` is made; `check_sizes` compares every size with the shapes in the weights file's
header (`weight_shapes`: the safetensors header alone, no tensor read), so a model is only ever as large
as its own weights.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from mtu.config import BOUNDS, LEGACY_EMBEDDING_KEY
from mtu.methods import AdapterSpec, Method, method_of

_ROUTER = re.compile(r"\.router\.net\.(0|2)\.(weight|bias)$")
_INPUT_CONV = re.compile(r"\.convs\.(\w+)\.weight$")


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, from its header (nothing is read or allocated)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as weights:
            return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except SafetensorError as error:  # truncated or not a safetensors file at all
        raise ValueError(f"{path} is damaged or not a safetensors file ({error})") from None


def check_sizes(config: Any, shapes: dict[str, tuple[int, ...]], where: Path, latent_channels: int | None) -> None:
    """Every size of `config` against the saved weights' `shapes`, before the model is built from it.

    Args:
        config: the folder's `MTUConfig`.
        shapes: `weight_shapes` of its weights file.
        where: the weights file, for messages.
        latent_channels: the base denoiser's input channels (each task's input conv is checked against
            them); None skips that check.
    """
    problems = _embedding_problems(config, shapes) + _router_problems(config, shapes)
    if latent_channels is not None:
        problems += _input_conv_problems(config, shapes, latent_channels)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"{where} does not match its mtu_config.json: {'; '.join(problems[:3])}{more}; the config or the "
            "weights were edited or come from another model"
        )


def _embedding_problems(config: Any, shapes: dict) -> list[str]:
    names, width = config.task_names, config.task_embedding_dim
    if LEGACY_EMBEDDING_KEY in shapes:
        table = shapes[LEGACY_EMBEDDING_KEY]
        wanted = (len(names), width)
        return [] if table == wanted else [f"{LEGACY_EMBEDDING_KEY} is {table}, the config asks for {wanted}"]
    prefix = "task_embeddings."
    saved = {key.removeprefix(prefix): shape for key, shape in shapes.items() if key.startswith(prefix)}
    if sorted(saved) != sorted(names):
        return [f"the weights hold embeddings of tasks {sorted(saved)}, the config lists {names}"]
    wrong = [name for name, shape in saved.items() if shape != (width,)]
    return [f"{prefix}{name} is {saved[name]}, task_embedding_dim is {width}" for name in wrong]


def _router_problems(config: Any, shapes: dict) -> list[str]:
    hidden, width, experts = config.router_hidden_dim, config.task_embedding_dim, config.num_experts
    expected = {
        ("0", "weight"): (hidden, width),
        ("0", "bias"): (hidden,),
        ("2", "weight"): (experts, hidden),
        ("2", "bias"): (experts,),
    }
    problems = []
    for key, shape in shapes.items():
        found = _ROUTER.search(key)
        if found and shape != expected[found.groups()]:
            problems.append(
                f"{key} is {shape}, but router_hidden_dim {hidden}, task_embedding_dim {width} and num_experts "
                f"{experts} make it {expected[found.groups()]}"
            )
    return problems


def _input_conv_problems(config: Any, shapes: dict, latent_channels: int) -> list[str]:
    saved = {}
    for key, shape in shapes.items():
        found = _INPUT_CONV.search(key)
        if found and len(shape) == 4:
            saved[found.group(1)] = shape[1]
    if not saved:
        return []  # a model without per-task input convs (none was upcycled): nothing to compare
    problems = []
    for task in config.tasks:
        channels = task.input_channels(latent_channels)
        if task.name not in saved:
            problems.append(f"task {task.name!r} has no saved input conv")
        elif saved[task.name] != channels:
            problems.append(
                f"task {task.name!r} takes {channels} input channels, its saved input conv {saved[task.name]}"
            )
    return problems


def check_adapter(
    method: Method | str | None, adapter: Any, shapes: dict[str, tuple[int, ...]] | None, where: Path
) -> None:
    """A run's adapter fields (training_method.json): a lora / ia3 run needs its own method's adapter, with a
    bounded rank (LoRA: >= 1) that matches the saved LoRA matrices (`shapes`: `weight_shapes` of
    adapters.safetensors, None when absent); another run may leave it out."""
    method = method_of(method)
    if adapter is None and not (method is not None and method.adapters):
        return
    name = None if method is None else method.value
    allowed = {field.name for field in fields(AdapterSpec)}
    if not isinstance(adapter, dict) or set(adapter) - allowed or adapter.get("method") != name:
        raise ValueError(
            f"{where}: a {name} run's adapter is an object of {sorted(allowed)} with method {name!r}, got {adapter!r}"
        )
    rank, low = adapter.get("rank", 0), 1 if method is not None and method.ranked else 0
    if isinstance(rank, bool) or not isinstance(rank, int) or not low <= rank <= BOUNDS["rank"]:
        raise ValueError(f"{where}: adapter rank must be a whole number from {low} to {BOUNDS['rank']:,}, got {rank!r}")
    wrong = [key for key, shape in (shapes or {}).items() if ".lora_A." in key and shape[:1] != (rank,)]
    if wrong:
        saved = shapes[wrong[0]]
        raise ValueError(f"{where}: adapter rank {rank} does not match the saved LoRA weights ({wrong[0]} is {saved})")
