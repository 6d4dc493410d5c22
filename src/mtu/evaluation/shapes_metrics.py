"""Analytic metrics in the Shapes world: attribute accuracy read back by the parser, PSNR and SSIM.

Attribute accuracy compares the parsed scene of an output with the scene it should show:
- per image: ``background``, ``count`` (as many objects as expected), ``all_correct`` (the whole scene);
- per expected object: ``color``, ``shape``, ``position``. Objects are matched by grid cell first; an
  expected object whose cell holds nothing is then matched to a leftover parsed object sharing its
  colour or shape (credit for those, position wrong); one never matched scores zero everywhere.
Rates over zero expected objects (scenes emptied by "remove") are None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtu.data.shapes.parser import parse_scene
from mtu.data.shapes.tasks import TASKS
from mtu.data.shapes.world import Scene, ShapeObject

IMAGE_KEYS = ("background", "count", "all_correct")
OBJECT_KEYS = ("color", "shape", "position")


def _attribute_agreement(a: ShapeObject, b: ShapeObject) -> int:
    return int(a.color == b.color) + int(a.shape == b.shape)


def match_objects(predicted: Scene, expected: Scene) -> list[tuple[ShapeObject, ShapeObject | None]]:
    """Pair each expected object with a parsed one (or None): same cell first, then best attribute agreement."""
    leftover = [obj for obj in predicted.objects if expected.object_at(obj.position) is None]
    pairs = []
    for true in expected.objects:
        found = predicted.object_at(true.position)
        if found is None and leftover:
            best = max(leftover, key=lambda obj: _attribute_agreement(obj, true))
            if _attribute_agreement(best, true) > 0:
                found = best
                leftover.remove(best)
        pairs.append((true, found))
    return pairs


def score_scene(predicted: Scene, expected: Scene) -> dict[str, list[float]]:
    """Per-image scores (one value each) and per-object scores (one value per expected object)."""
    scores: dict[str, list[float]] = {
        "background": [float(predicted.background == expected.background)],
        "count": [float(len(predicted.objects) == len(expected.objects))],
        "all_correct": [float(predicted.sorted() == expected.sorted())],
        "color": [],
        "shape": [],
        "position": [],
    }
    for true, found in match_objects(predicted, expected):
        scores["color"].append(float(found is not None and found.color == true.color))
        scores["shape"].append(float(found is not None and found.shape == true.shape))
        scores["position"].append(float(found is not None and found.position == true.position))
    return scores


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summarise(per_scene: list[dict[str, list[float]]]) -> dict[str, float | int | None]:
    summary: dict[str, float | int | None] = {
        key: _mean([value for scores in per_scene for value in scores[key]]) for key in IMAGE_KEYS + OBJECT_KEYS
    }
    summary["num_images"] = len(per_scene)
    return summary


def _check_lengths(**sequences: Sequence) -> None:
    lengths = {name: len(sequence) for name, sequence in sequences.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"expected sequences of equal length, got {lengths}")


def t2i_accuracy(images: Sequence[np.ndarray], scenes: Sequence[Scene], per_example: bool = False) -> dict:
    """Prompt-attribute accuracy of generated images.

    Args:
        images: (H, W, 3) uint8 or float in [0, 1] images, or one (N, H, W, 3) array; any size.
        scenes: the scene each image's prompt described.

    Returns:
        ``{"background", "color", "shape", "position", "count", "all_correct", "num_images",
        "by_num_objects": {"1": {same keys}, "2": ..., "3": ...}}`` (groups present in `scenes` only).
    """
    _check_lengths(images=images, scenes=scenes)
    per_scene = [score_scene(parse_scene(image), scene) for image, scene in zip(images, scenes)]
    metrics: dict = _summarise(per_scene)
    groups = sorted({len(scene.objects) for scene in scenes})
    metrics["by_num_objects"] = {
        str(n): _summarise([scores for scores, scene in zip(per_scene, scenes) if len(scene.objects) == n])
        for n in groups
    }
    if per_example:
        metrics["per_example"] = {"all_correct": [scores["all_correct"][0] for scores in per_scene]}
    return metrics


def _to_tensor(images: Sequence[np.ndarray]):
    """(N, 3, H, W) float64 in [0, 1] from uint8 or [0, 1] float images.

    float64 because SSIM's variances (E[x^2] - E[x]^2) cancel badly in float32 on flat regions: an
    image scores 0.998 against itself.
    """
    import torch

    array = np.stack([np.asarray(image) for image in images])
    array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64).clip(0, 1)
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def pair_metrics(
    outputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    target_scenes: Sequence[Scene],
    task: str,
    masks: Sequence[np.ndarray] | None = None,
    per_example: bool = False,
) -> dict:
    """Quality of image-to-image outputs against exact targets.

    Args:
        outputs: model outputs, (H, W, 3) uint8 or float in [0, 1].
        targets: ground-truth images, same sizes as `outputs`.
        target_scenes: the scene each target shows.
        task: one of `mtu.data.shapes.tasks.TASKS`, recorded in the result.
        masks: (H, W) masks, 1 = the region to fill: adds "psnr_hole", PSNR over those pixels only.
        per_example: add "per_example": {"psnr", "all_correct" (and "psnr_hole")}, one value per output,
            for paired statistics.

    Returns:
        ``{"task", "psnr", "ssim"}`` (PSNR per image then averaged, data range 1.0) plus the attribute
        accuracy of the parsed outputs against `target_scenes` (keys as in `t2i_accuracy`, without the split).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    _check_lengths(outputs=outputs, targets=targets, target_scenes=target_scenes)
    if not outputs:
        raise ValueError("pair_metrics needs at least one output")
    predicted, expected = _to_tensor(outputs), _to_tensor(targets)
    if predicted.shape != expected.shape:
        raise ValueError(
            f"outputs {tuple(predicted.shape)} and targets {tuple(expected.shape)} differ in shape (N, C, H, W)"
        )
    # Per-image PSNR, averaged: a batch-level MSE would let one bad image hide among good ones.
    psnr = peak_signal_noise_ratio(predicted, expected, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = psnr.clamp(max=PSNR_CAP)  # an exact copy (a baseline's pasted pixels) is infinite
    ssim = structural_similarity_index_measure(predicted, expected, data_range=1.0)
    metrics: dict = {"task": task, "psnr": float(psnr.mean()), "ssim": float(ssim)}
    scores = {"psnr": psnr.tolist()}
    if masks is not None:
        scores["psnr_hole"] = hole_psnr(predicted, expected, masks)
        metrics["psnr_hole"] = float(np.mean(scores["psnr_hole"]))
    per_scene = [score_scene(parse_scene(output), scene) for output, scene in zip(outputs, target_scenes)]
    metrics.update(_summarise(per_scene))
    if per_example:
        metrics["per_example"] = {**scores, "all_correct": [s["all_correct"][0] for s in per_scene]}
    return metrics


PSNR_CAP = 60.0  # dB: an RMS error of 1/1000 of the range; exact matches would otherwise average to infinity


def hole_psnr(predicted, expected, masks: Sequence[np.ndarray]) -> list[float]:
    """Per-image PSNR (data range 1) over the pixels where the mask is set; the hole must not be empty."""
    values = []
    for output, target, mask in zip(predicted, expected, masks):
        hole = np.asarray(mask, dtype=bool)
        if not hole.any():
            raise ValueError("an inpainting mask is empty: PSNR inside the hole is undefined")
        mse = float(((output - target) ** 2).permute(1, 2, 0).numpy()[hole].mean())
        values.append(PSNR_CAP if mse == 0 else min(PSNR_CAP, float(-10 * np.log10(mse))))
    return values


# The numbers each Shapes task is summarised by, everywhere (reports, logs, the CLI's one-liners).
HEADLINE_METRIC = {
    "t2i": "all_correct",
    "edit": "psnr",
    "sr": "psnr",
    "remove": "psnr",
    "inpaint": "psnr",
    "colorize": "psnr",
}
SUMMARY_METRICS = {
    "t2i": ("all_correct", "color", "shape", "position", "background"),
    "default": ("psnr", "ssim", "all_correct"),
}


def headline_metric(task: str) -> str:
    """The one metric a task's results are compared by: t2i all-attributes-correct, else PSNR (dB)."""
    return HEADLINE_METRIC.get(task, "psnr")


def summary(task: str, metrics: dict, separator: str = ", ") -> str:
    """The task's summary metrics as "name value" pairs, e.g. "psnr 24.310, ssim 0.871, all_correct 0.812"."""
    keys = SUMMARY_METRICS.get(task, SUMMARY_METRICS["default"])
    return separator.join(f"{key} {metrics[key]:.3f}" for key in keys if isinstance(metrics.get(key), (int, float)))
