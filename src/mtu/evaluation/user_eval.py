"""Evaluate an MTU model on the user's own data with the paper's metrics (`mtu eval --benchmark folder`).

The data is a JSON Lines file (or a folder holding ``metadata.jsonl``), one example per line; image
paths are relative to the file's folder. Fields per task (``?`` = optional; ``captions?`` = input_caption
and output_caption, the captions of the image before and after):

| task | fields | what is scored |
|---|---|---|
| t2i | caption, image? (a real image, for FID) | FID vs the images, CLIP score |
| edit | input_image, edit_prompt, captions? | directional similarity (needs both captions), image similarity |
| sr | image (high-res), caption? | LPIPS, PSNR, SSIM vs `image`; the input is `degrade(image, training=False)` |
| remove | source_image, instruction, target_image, captions? | FID, LPIPS, PSNR, SSIM vs the target; directional |
| inpaint | image, caption?, mask? (white = fill) | FID, LPIPS vs `image`, CLIP score (mask: else `random_mask`) |

Images are centre-cropped to squares and resized to the model's resolution (or `resolution`).
Everything that can fail cheaply (fields, files, weight files, the model's tasks) is checked before
the model loads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from mtu.evaluation.paper_metrics.metrics import (
    METRICS,
    TASK_METRICS,
    EvalBatch,
    compute_metrics,
    find_networks,
    load_networks,
)

IMAGE_FIELDS = {"image", "input_image", "source_image", "target_image", "mask"}


@dataclass(frozen=True)
class RecordFormat:
    """How a task's examples are written in a dataset (the table above); image fields hold paths.

    What is done with them (degrade the input for a task that scales up, draw a mask when none is given)
    follows the model's `TaskSpec`, not the task's name.

    Attributes:
        required, optional: the record's fields.
        prompt: the field holding the text (an absent optional one reads as "").
        image: the input image's field; for a task that scales up, the high-res image it is degraded from.
        reference: the field of the image the outputs are compared with, if any.
        mask: the field of an inpainting mask, if any.
        batch: the `EvalBatch` fields the records can fill -> the record field they come from (None: built
            from required fields, so always there).
    """

    required: tuple[str, ...]
    optional: tuple[str, ...]
    prompt: str
    image: str | None = None
    reference: str | None = None
    mask: str | None = None
    batch: dict[str, str | None] = field(default_factory=dict)


FORMATS: dict[str, RecordFormat] = {
    "t2i": RecordFormat(
        ("caption",), ("image",), "caption", reference="image", batch={"captions": "caption", "references": "image"}
    ),
    "edit": RecordFormat(
        ("input_image", "edit_prompt"),
        ("input_caption", "output_caption"),
        "edit_prompt",
        image="input_image",
        batch={"inputs": None, "source_captions": "input_caption", "target_captions": "output_caption"},
    ),
    "sr": RecordFormat(
        ("image",), ("caption",), "caption", image="image", reference="image", batch={"references": None}
    ),
    "remove": RecordFormat(
        ("source_image", "instruction", "target_image"),
        ("input_caption", "output_caption"),
        "instruction",
        image="source_image",
        reference="target_image",
        batch={
            "inputs": None,
            "references": None,
            "source_captions": "input_caption",
            "target_captions": "output_caption",
        },
    ),
    "inpaint": RecordFormat(
        ("image",),
        ("caption", "mask"),
        "caption",
        image="image",
        reference="image",
        mask="mask",
        batch={"references": None, "captions": "caption"},
    ),
}

METADATA_NAME = "metadata.jsonl"


@dataclass
class Example:
    """One record made ready: the pipeline's request inputs plus what the metrics compare against."""

    prompt: str
    image: np.ndarray | None = None  # uint8 (H, W, 3) pipeline input
    mask: np.ndarray | None = None  # uint8 (H, W), 1 = fill
    metric_input: np.ndarray | None = None  # the input as the metrics see it (edit, remove)
    reference: np.ndarray | None = None


def read_records(data: str | Path) -> tuple[list[dict], Path]:
    """Records of a JSONL file (or of ``<folder>/metadata.jsonl``) and the folder image paths are relative to."""
    path = Path(data).expanduser()
    if path.is_dir():
        path = path / METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {path}: pass a .jsonl file or a folder holding {METADATA_NAME}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not JSON ({error.msg}): one JSON object per line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} line {number} is a {type(record).__name__}, expected a JSON object")
        records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records")
    return records, path.parent


def record_format(task: str) -> RecordFormat:
    if task not in FORMATS:
        raise ValueError(f"task {task!r} has no dataset format; valid options: {list(FORMATS)}")
    return FORMATS[task]


def check_records(records: Sequence[dict], root: Path, task: str) -> None:
    """Every record has the task's required fields as non-empty strings, and every image file exists.

    Records are numbered from 1 in error messages.
    """
    required, optional = record_format(task).required, record_format(task).optional
    for number, record in enumerate(records, start=1):
        missing = [name for name in required if not isinstance(record.get(name), str) or not record[name].strip()]
        if missing:
            raise ValueError(
                f"record {number} lacks {missing} (task {task} needs {list(required)}, optionally {list(optional)})"
            )
        for name in (*required, *optional):
            value = record.get(name)
            if name in IMAGE_FIELDS and value is not None and not (isinstance(value, str) and (root / value).is_file()):
                raise FileNotFoundError(f"record {number}: {name} {root / str(value)} does not exist")


def _record_gaps(task: str, records: Sequence[dict], metric: str) -> list[str]:
    """What the records lack for `metric` (empty when every record feeds it)."""
    sources = record_format(task).batch
    gaps = []
    for need in METRICS[metric].needs:
        if need not in sources:
            gaps.append(f"{need} (task {task} has none)")
        elif sources[need] and not all(isinstance(r.get(sources[need]), str) and r[sources[need]] for r in records):
            gaps.append(f"'{sources[need]}' in every record")
    return gaps


def choose_metrics(
    task: str, records: Sequence[dict], requested: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """The metrics to compute and, for the task's defaults the data cannot feed, why each is skipped.

    A metric asked for by name that the data cannot feed is an error rather than a skip.
    """
    if requested:
        for metric in requested:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; valid options: {list(METRICS)}")
            if gaps := _record_gaps(task, records, metric):
                raise ValueError(f"metric {metric} on task {task} needs {', '.join(gaps)}")
        return list(requested), {}
    gaps = {metric: _record_gaps(task, records, metric) for metric in TASK_METRICS[task]}
    return [m for m, g in gaps.items() if not g], {m: "needs " + ", ".join(g) for m, g in gaps.items() if g}


def _centre_square(path: Path, mode: str, size: int, resample: PIL.Image.Resampling) -> np.ndarray:
    from mtu.utils.images import open_image

    image = open_image(path).convert(mode)  # within mtu.utils.limits; 16-bit files scaled, not clipped
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), resample))


def load_square(path: Path, size: int) -> np.ndarray:
    """RGB image, centre-cropped to a square and resized to `size`: uint8 (size, size, 3)."""
    return _centre_square(path, "RGB", size, PIL.Image.Resampling.BICUBIC).astype(np.uint8)


def load_mask(path: Path, size: int) -> np.ndarray:
    """Mask image cropped like `load_square`: uint8 (size, size), 1 where brighter than mid-grey (to fill)."""
    return (_centre_square(path, "L", size, PIL.Image.Resampling.NEAREST) > 127).astype(np.uint8)


def prepare_example(spec: Any, record: dict, root: Path, size: int, rng: np.random.Generator) -> Example:
    """Build one example's pipeline inputs and metric references (`rng` draws sr noise / inpaint masks).

    `spec` is the model's `TaskSpec` of the task: a task that scales up gets its input degraded from the
    high-res image by `spec.upscale`; a "masked_image" task gets the record's mask or a random one.
    """
    from mtu.data.shapes.degrade import degrade, random_mask

    form = record_format(spec.name)
    prompt = record.get(form.prompt) or ""
    reference = load_square(root / record[form.reference], size) if record.get(form.reference) else None
    if spec.conditioning == "none":
        return Example(prompt, reference=reference)
    image = reference if form.image == form.reference else load_square(root / record[form.image], size)
    if spec.upscale > 1:
        return Example(prompt, image=degrade(image, rng, scale=spec.upscale, training=False), reference=image)
    if spec.conditioning == "masked_image":
        mask = load_mask(root / record[form.mask], size) if record.get(form.mask) else random_mask(rng, size)
        return Example(prompt, image=image, mask=mask, reference=reference)
    return Example(prompt, image=image, metric_input=image, reference=reference)


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (N, H, W, 3) arrays -> uint8 tensor (N, 3, H, W)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def generate(
    pipeline: Any,
    task: str,
    examples: Sequence[Example],
    size: int,
    seed: int,
    batch_size: int,
    num_inference_steps: int,
    **sampler: Any,
) -> torch.Tensor:
    """Run every example through `pipeline.run_batch`; one generator per example, so batching does not matter."""
    from mtu.pipelines import MTURequest

    pipeline.set_progress_bar_config(disable=True)
    outputs = []
    for start in range(0, len(examples), batch_size):
        requests = [
            MTURequest(
                task,
                example.prompt,
                image=None if example.image is None else PIL.Image.fromarray(example.image),
                mask_image=None if example.mask is None else PIL.Image.fromarray(example.mask * 255),
                generator=torch.Generator().manual_seed(seed * 1_000_003 + start + offset),
                height=size,
                width=size,
                **sampler,
            )
            for offset, example in enumerate(examples[start : start + batch_size])
        ]
        for images in pipeline.run_batch(requests, num_inference_steps=num_inference_steps, output_type="np"):
            outputs.extend(np.clip(np.rint(np.asarray(images) * 255), 0, 255).astype(np.uint8))
    return _to_tensor(outputs)


def eval_batch(task: str, records: Sequence[dict], examples: Sequence[Example], outputs: torch.Tensor) -> EvalBatch:
    """The metrics' view of a run: outputs plus whatever the task's records and examples provide."""
    sources = record_format(task).batch

    def texts(name: str) -> list[str] | None:
        if not sources.get(name):
            return None
        values = [record.get(sources[name]) for record in records]
        return values if all(isinstance(value, str) and value for value in values) else None

    def images(name: str, attribute: str) -> torch.Tensor | None:
        values = [getattr(example, attribute) for example in examples]
        return None if name not in sources or any(v is None for v in values) else _to_tensor(values)

    return EvalBatch(
        outputs=outputs,
        inputs=images("inputs", "metric_input"),
        references=images("references", "reference"),
        captions=texts("captions"),
        source_captions=texts("source_captions"),
        target_captions=texts("target_captions"),
    )


def evaluate_folder(
    model: str | Path,
    data: str | Path,
    task: str,
    metrics: Sequence[str] | None = None,
    clip: str | None = None,
    inception: str | None = None,
    lpips: str | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    resolution: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str | None = None,
) -> dict:
    """Run a model on a user dataset and score it with the task's paper metrics.

    Args:
        model: anything `MTUPipeline.from_pretrained` loads: an MTU folder, an `mtu train` run's model/ (any
            method), or a base pipeline / shipped name (upcycled afresh).
        data: a .jsonl file or a folder with ``metadata.jsonl`` (format in the module docstring).
        task: the task to run and score.
        metrics: metric names (see `METRICS`); None: the task's `TASK_METRICS` that the data can feed.
        clip, inception, lpips: weight locations (see `paper_metrics.weights`); None: the usual caches.
        num_samples: the first `num_samples` records; None: all.
        seed: seeds each example's noise, sr degradation noise and inpaint masks.
        resolution: square output size; None: the model's native size.
        num_inference_steps, guidance_scale, image_guidance_scale: sampler settings; None takes the model's
            stored ones for the task (`mtu.sampler`), else 50 steps, guidance 7.5, image guidance 1.5.
        batch_size: examples per denoising loop.
        device: torch device; None picks cuda when available.
        dtype: "float32" (None), "bfloat16" or "float16" (`mtu.utils.devices`).

    Returns:
        ``{"task", "model", "data", "num_samples", "seed", "resolution", "sampler", "metrics": {name: value},
        "skipped": {name: reason}}``.
    """
    _check_settings(num_samples, batch_size, num_inference_steps, resolution)
    records, root = read_records(data)
    records = records[:num_samples] if num_samples else records
    check_records(records, root, task)
    chosen, skipped = choose_metrics(task, records, metrics)
    if not chosen:
        raise ValueError(f"no metric to compute for task {task} on this data: {skipped}")
    if "fid" in chosen and len(records) < 2:
        raise ValueError(f"FID needs at least 2 examples, the data has {len(records)}")
    paths = find_networks(chosen, inception=inception, lpips_path=lpips, clip=clip)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline, spec = _load_model(model, task, device, dtype)
    size = resolution or pipeline.unet.config.sample_size * pipeline.vae_scale_factor
    if size % spec.upscale:
        raise ValueError(
            f"{task} needs a resolution divisible by {spec.upscale} (the low-res input is 1/{spec.upscale}), got {size}"
        )
    examples = [prepare_example(spec, r, root, size, np.random.default_rng((seed, i))) for i, r in enumerate(records)]
    stored = pipeline.sampler_for(task).replace(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        image_guidance_scale=image_guidance_scale,
    )
    num_inference_steps = stored.num_inference_steps
    sampler = {"guidance_scale": stored.guidance_scale, "image_guidance_scale": stored.image_guidance_scale}
    outputs = generate(pipeline, task, examples, size, seed, batch_size, num_inference_steps, **sampler)
    del pipeline  # free the denoiser before the feature networks load
    values = compute_metrics(chosen, eval_batch(task, records, examples, outputs), load_networks(paths, device))
    return {
        "task": task,
        "model": str(model),
        "data": str(data),
        "num_samples": len(records),
        "seed": seed,
        "resolution": size,
        "sampler": {"num_inference_steps": num_inference_steps, **sampler},
        "metrics": values,
        "skipped": skipped,
    }


def _check_settings(num_samples: int | None, batch_size: int, steps: int | None, resolution: int | None) -> None:
    from mtu.utils.limits import check_side, check_steps

    if (num_samples is not None and num_samples < 1) or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    if steps is not None:  # None: the model's stored steps
        check_steps(steps)
    if resolution is not None:  # 0 is refused, not taken for "the model's size"
        check_side("resolution", resolution)


def _load_model(model: str | Path, task: str, device: str, dtype: str | None = None) -> tuple[Any, Any]:
    """The pipeline of any model the loader takes (`MTUPipeline.from_pretrained`) and `task`'s spec in it."""
    from mtu.loading import inspect_model
    from mtu.utils.devices import load_pipeline

    source = inspect_model(model)  # the task is checked before any weights load
    if task not in source.task_names():
        raise ValueError(f"{model} does not serve task {task!r}; it serves {source.task_names()}")
    pipeline = load_pipeline(model, device=device, dtype=dtype)
    config = pipeline.unet.mtu_config
    return pipeline, config.tasks[config.task_index(task)]
