"""Run a model on the held-out Shapes evaluation set and score it (`mtu eval --benchmark shapes`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mtu.assets import SHAPES_BASE_SAMPLER, resolve_model_path
from mtu.data.shapes.tasks import TASKS, TaskExample, evaluation_set
from mtu.evaluation.shapes_metrics import t2i_accuracy


def _batches(items: Sequence[TaskExample], batch_size: int) -> Iterator[Sequence[TaskExample]]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def evaluate_t2i(pipeline: Any, num_samples: int, seed: int, batch_size: int = 16, **sampler_kwargs: Any) -> dict:
    """Prompt-attribute accuracy of a text-to-image pipeline on held-out Shapes captions.

    Args:
        pipeline: called like diffusers' `StableDiffusionPipeline`:
            ``pipeline(prompt=[...], generator=..., output_type="np", **sampler_kwargs).images``.
            Its own progress bar is turned off (this function shows one over batches).
        num_samples: number of held-out captions, ``evaluation_set("t2i", num_samples, seed)``.
        seed: selects the captions and seeds the one CPU generator all batches draw their noise from;
            a fixed seed and batch size give the same result.
        batch_size: prompts per pipeline call.
        **sampler_kwargs: e.g. ``num_inference_steps``, ``guidance_scale``.

    Returns:
        `t2i_accuracy`'s dict plus ``num_samples``, ``seed`` and ``sampler`` (the kwargs used).
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    examples = evaluation_set("t2i", num_samples, seed)
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(seed)
    images = []
    total = -(-num_samples // batch_size)
    for batch in tqdm(_batches(examples, batch_size), total=total, desc="shapes t2i", unit="batch"):
        output = pipeline(prompt=[e.prompt for e in batch], generator=generator, output_type="np", **sampler_kwargs)
        images.extend(output.images)
    metrics = t2i_accuracy(images, [e.target_scene for e in examples])
    metrics.update(num_samples=num_samples, seed=seed, sampler=dict(sampler_kwargs))
    return metrics


def load_pipeline(model: str | Path, device: str | None = None) -> Any:
    """Load a diffusers Stable Diffusion folder (or a shipped model name) without a safety checker.

    Args:
        model: shipped model name (e.g. "shapes-base") or local folder.
        device: torch device; None picks "cuda" when available, else "cpu".
    """
    from diffusers import StableDiffusionPipeline

    path = resolve_model_path(model)
    pipeline = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    return pipeline.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def evaluate_shapes(
    model: str | Path,
    task: str,
    num_samples: int,
    seed: int,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    batch_size: int = 16,
    device: str | None = None,
) -> dict:
    """Load `model` and evaluate it on one Shapes task.

    Args:
        model: shipped model name or local folder.
        task: one of `TASKS`; only "t2i" is available until the MTU pipeline lands.
        num_samples, seed, batch_size: see `evaluate_t2i`.
        num_inference_steps, guidance_scale: sampler settings; None takes `SHAPES_BASE_SAMPLER`'s.
        device: torch device; None picks "cuda" when available.

    Returns:
        The metrics dict of `evaluate_t2i`, with ``task`` and ``model`` added.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    if task != "t2i":
        raise ValueError(f"task {task}: evaluation of upcycled models arrives with the MTU pipeline")
    sampler = dict(SHAPES_BASE_SAMPLER)
    if num_inference_steps is not None:
        sampler["num_inference_steps"] = num_inference_steps
    if guidance_scale is not None:
        sampler["guidance_scale"] = guidance_scale
    pipeline = load_pipeline(model, device)
    metrics = evaluate_t2i(pipeline, num_samples, seed, batch_size=batch_size, **sampler)
    return {"task": task, "model": str(model), **metrics}
