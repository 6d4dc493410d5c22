"""No-learning baselines: what a task scores without any model, the bar a trained model must clear.

- edit, remove: copy the input image (most of the scene is already right);
- colorize: copy the grayscale input (shapes and positions right, every colour wrong);
- sr: bicubic x4 of the low-resolution input;
- inpaint: paste the known pixels and fill the hole with the commonest colour outside it (the
  background, almost always); inpainting is scored inside the hole, where the baseline has to guess.

t2i has none: it has no input to copy (the base model itself is its reference).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from mtu.data.shapes.tasks import TaskExample


def copy_input(example: TaskExample) -> np.ndarray:
    return example.image.copy()


def bicubic_upscale(example: TaskExample) -> np.ndarray:
    size = example.target.shape[:2][::-1]
    return np.asarray(Image.fromarray(example.image).resize(size, Image.Resampling.BICUBIC))


def paste_and_fill(example: TaskExample) -> np.ndarray:
    hole = example.mask.astype(bool)
    known = example.image[~hole]
    colours, counts = np.unique(known.reshape(-1, 3), axis=0, return_counts=True)
    output = example.image.copy()
    output[hole] = colours[counts.argmax()]
    return output


BASELINES: dict[str, tuple[str, Callable[[TaskExample], np.ndarray]]] = {
    "edit": ("copy the input", copy_input),
    "remove": ("copy the input", copy_input),
    "colorize": ("copy the grayscale input", copy_input),
    "sr": ("bicubic x4", bicubic_upscale),
    "inpaint": ("paste + fill with the commonest colour", paste_and_fill),
}


def baseline_outputs(task: str, examples: list[TaskExample]) -> list[np.ndarray]:
    """The baseline's output for each example (ValueError for a task without one, e.g. t2i)."""
    if task not in BASELINES:
        raise ValueError(f"task {task!r} has no no-learning baseline; tasks with one: {sorted(BASELINES)}")
    return [BASELINES[task][1](example) for example in examples]
