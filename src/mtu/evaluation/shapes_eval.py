"""Run a model on the held-out Shapes evaluation set and score it (`mtu eval --benchmark shapes`)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mtu.config import BUILTIN_TASKS
from mtu.data.shapes.tasks import TASKS, TaskExample, evaluation_set
from mtu.evaluation.shapes_metrics import pair_metrics, t2i_accuracy
from mtu.sampler import SHAPES_SAMPLER

IMAGE_ONLY_SUFFIX = " (image only)"
# What a model without stored sampler settings is evaluated with.


def scored_image_only(task: str) -> bool:
    """Whether `task` is also scored from the image alone (empty prompt): its prompt is optional (sr, inpaint).

    A Shapes caption names every object and the background, so with its caption a good base answers such a
    task without reading the image.
    """
    return BUILTIN_TASKS[task].prompt == "optional"


def with_image_only(tasks: Sequence[str]) -> tuple[str, ...]:
    """`tasks`, each `scored_image_only` one followed by its image-only name.

    ("t2i", "sr") -> ("t2i", "sr", "sr (image only)").
    """
    names = []
    for task in tasks:
        names.append(task)
        if scored_image_only(task):
            names.append(task + IMAGE_ONLY_SUFFIX)
    return tuple(names)


def _check_prompt(task: str, prompt: bool) -> None:
    if not prompt and BUILTIN_TASKS[task].conditioning == "none":
        raise ValueError(f"{task} cannot be scored without its prompt (it has no input image); use prompt=True")


def parse_scored_name(name: str) -> tuple[str, bool]:
    """A scored name -> (task, prompt): "sr (image only)" -> ("sr", False), "sr" -> ("sr", True)."""
    if name.endswith(IMAGE_ONLY_SUFFIX):
        return name[: -len(IMAGE_ONLY_SUFFIX)], False
    return name, True


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


def example_request(example: TaskExample, seed: int, index: int, sampler: dict[str, Any], prompt: bool = True) -> Any:
    """An `MTURequest` for a Shapes example, with its own generator seeded from (seed, index).

    `prompt=False` sends an empty prompt: sr and inpaint then have to work from the image alone (a
    Shapes caption names every attribute, so a strong text-to-image base can answer them from the
    caption and ignore the image)."""
    import PIL.Image

    from mtu.pipelines import MTURequest

    image = None if example.image is None else PIL.Image.fromarray(example.image)
    mask = None if example.mask is None else PIL.Image.fromarray(example.mask * 255)
    size = example.target.shape[0]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return MTURequest(
        example.task,
        example.prompt if prompt else "",
        image=image,
        mask_image=mask,
        generator=generator,
        height=size,
        width=size,
        **sampler,
    )


def evaluate_mtu_task(
    pipeline: Any,
    task: str,
    num_samples: int,
    seed: int,
    batch_size: int = 16,
    num_inference_steps: int = 25,
    prompt: bool = True,
    per_example: bool = False,
    **sampler: Any,
) -> dict:
    """Score one task of an `MTUPipeline` on held-out Shapes examples against their exact targets.

    Each example has its own generator (seeded from `seed` and its index), so results do not depend on
    the batch size. t2i is scored by prompt-attribute accuracy; the image tasks by PSNR/SSIM against the
    target plus the parser's attribute accuracy on the target scene (what should change and what should stay).

    Args:
        pipeline: an `mtu.pipelines.MTUPipeline`.
        task: a task of the model that the Shapes world defines.
        prompt: False sends empty prompts (see `example_request`); t2i needs its prompt.
        per_example: add each example's scores (`pair_metrics`), for paired statistics.
        sampler: `MTURequest` settings such as ``guidance_scale`` and ``image_guidance_scale``.
    """
    _check_prompt(task, prompt)
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    examples = evaluation_set(task, num_samples, seed)
    pipeline.set_progress_bar_config(disable=True)
    outputs = []
    for start in tqdm(range(0, num_samples, batch_size), desc=f"shapes {task}", unit="batch"):
        batch = examples[start : start + batch_size]
        requests = [example_request(e, seed, start + i, sampler, prompt) for i, e in enumerate(batch)]
        for images in pipeline.run_batch(requests, num_inference_steps=num_inference_steps, output_type="np"):
            outputs.extend(images)
    metrics = score_outputs(task, outputs, examples, per_example)
    metrics.update(
        task=task,
        num_samples=num_samples,
        seed=seed,
        prompt=prompt,
        sampler={"num_inference_steps": num_inference_steps, **sampler},
    )
    return metrics


def score_reference(
    pipeline: Any, task: str, num_samples: int, seed: int, steps: int, prompt: bool = True, per_example: bool = False
) -> dict:
    """`evaluate_mtu_task` with the Shapes models' own sampler (`mtu.assets.SHAPES_BASE_SAMPLER`) at `steps`.

    The one way the reproduction scores a model (its runs, pilots and the shipped model's check), so that
    their figures differ only by the model and the examples' seed, never by sampling settings.
    """
    from mtu.assets import SHAPES_BASE_SAMPLER

    sampler = {**SHAPES_BASE_SAMPLER, "num_inference_steps": steps}
    return evaluate_mtu_task(
        pipeline, task, num_samples, seed, batch_size=32, prompt=prompt, per_example=per_example, **sampler
    )


def score_outputs(task: str, outputs: Sequence, examples: Sequence[TaskExample], per_example: bool = False) -> dict:
    """Score outputs against their examples: prompt accuracy for tasks without an input image, else
    `pair_metrics` (with PSNR inside the hole where the examples carry masks)."""
    if examples[0].image is None:
        return t2i_accuracy(outputs, [e.target_scene for e in examples], per_example)
    masks = [e.mask for e in examples] if examples[0].mask is not None else None
    targets, scenes = [e.target for e in examples], [e.target_scene for e in examples]
    return pair_metrics(outputs, targets, scenes, examples[0].task, masks, per_example)


def evaluate_baseline(task: str, num_samples: int, seed: int, per_example: bool = False) -> dict:
    """The no-learning baseline of `task` (`mtu.data.shapes.baselines`) scored on the same held-out examples."""
    from mtu.data.shapes.baselines import BASELINES, baseline_outputs

    examples = evaluation_set(task, num_samples, seed)
    metrics = score_outputs(task, baseline_outputs(task, examples), examples, per_example)
    return {**metrics, "task": task, "num_samples": num_samples, "seed": seed, "baseline": BASELINES[task][0]}


def evaluate_shapes(
    model: str | Path,
    task: str,
    num_samples: int,
    seed: int,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    batch_size: int = 16,
    device: str | None = None,
    prompt: bool = True,
    dtype: str | None = None,
) -> dict:
    """Load `model` (`MTUPipeline.from_pretrained`) and evaluate it on one Shapes task.

    Args:
        model: anything the loader takes: a trained run's `model/` folder (any method: mtu, single-task,
            add-task, lora, ia3, full), an MTU folder, or a base pipeline folder / shipped name (upcycled
            afresh, so every task computes what the base computes; its own task, t2i, is scored as its
            model card scores it: `evaluate_t2i`, one generator across batches).
        task: one of `TASKS`, served by the model.
        num_samples, seed, batch_size: see `evaluate_t2i` / `evaluate_mtu_task`.
        num_inference_steps, guidance_scale, image_guidance_scale: sampler settings; None takes the model's
            stored ones for the task (`mtu.sampler`), else `SHAPES_BASE_SAMPLER`'s (image guidance 1.5).
        device: torch device; None picks "cuda" when available.
        prompt: False scores the image tasks with empty prompts (see `example_request`).
        dtype: "float32" (None), "bfloat16" or "float16" (`mtu.utils.devices`).

    Returns:
        The metrics dict, with ``task`` and ``model`` added.
    """
    from mtu.loading import inspect_model
    from mtu.utils.devices import load_pipeline

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    _check_prompt(task, prompt)
    source = inspect_model(model)  # refusals before any weights load
    if task not in source.task_names():
        raise ValueError(f"{model} does not serve task {task!r}; it serves {source.task_names()}")
    pipeline = load_pipeline(model, device=device, dtype=dtype)
    # The model's stored sampler for the task (`mtu.sampler`), else the Shapes one; the caller's values win.
    sampler = pipeline.sampler_for(task, SHAPES_SAMPLER).replace(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        image_guidance_scale=image_guidance_scale,
    )
    steps = {"num_inference_steps": sampler.num_inference_steps, "guidance_scale": sampler.guidance_scale}
    if source.kind == "base" and BUILTIN_TASKS[task].conditioning == "none":
        pipeline.set_progress_bar_config(disable=True)
        run = functools.partial(pipeline, task)  # called the stock way: run(prompt=[...], generator=...)
        metrics = evaluate_t2i(run, num_samples, seed, batch_size=batch_size, **steps)
    else:
        guidance = {"image_guidance_scale": sampler.image_guidance_scale}
        metrics = evaluate_mtu_task(pipeline, task, num_samples, seed, batch_size, prompt=prompt, **guidance, **steps)
    return {**metrics, "task": task, "model": str(model)}
