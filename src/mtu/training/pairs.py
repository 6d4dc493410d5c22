"""What a training example is (`Pair`) and how raw record values become one: images, texts, tensors.

Images are decoded within the training limits; a value that cannot be read raises `UnreadableSample`,
which the batch builder skips, warns about and counts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mtu.utils.limits import check_image_size, check_text, training_max_side


class UnreadableSample(Exception):
    """A record whose image or text cannot be decoded (skipped, not fatal)."""


@dataclass
class Pair:
    """One training example before collation.

    Attributes:
        task: task name.
        text: prompt or instruction ("" for none).
        target: uint8 (H, W, 3): the image the model learns to produce.
        image: uint8 (H, W, 3) conditioning image at the target size, for "image" / "masked_image" tasks.
        mask: uint8 (H, W), 1 = region to fill, for "masked_image" tasks.
    """

    task: str
    text: str
    target: np.ndarray
    image: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def droppable_image(self) -> bool:
        """Conditioning dropout may drop the image: "image" layouts only (inpainting keeps its masked image)."""
        return self.image is not None and self.mask is None


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.tensor(image).permute(2, 0, 1).float() / 127.5 - 1


def stack_pairs(pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """{"target", "image": (B, 3, H, W) in [-1, 1], "mask": (B, 1, H, W)}; missing images / masks are zeros."""
    targets = torch.stack([to_tensor(pair.target) for pair in pairs])
    zeros, no_mask = torch.zeros_like(targets[0]), torch.zeros(1, *targets.shape[2:])
    images = torch.stack([to_tensor(pair.image) if pair.image is not None else zeros for pair in pairs])
    masks = [torch.tensor(pair.mask, dtype=torch.float32)[None] if pair.mask is not None else no_mask for pair in pairs]
    return {"target": targets, "image": images, "mask": torch.stack(masks)}


def fit(image: np.ndarray, resolution: int) -> np.ndarray:
    """Resize the short side to `resolution` (bicubic) and centre-crop a square; no-op at the right size."""
    height, width = image.shape[:2]
    if height == width == resolution:
        return image
    scale = resolution / min(height, width)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    top, left = (resized.shape[0] - resolution) // 2, (resized.shape[1] - resolution) // 2
    return resized[top : top + resolution, left : left + resolution]


def to_rgb(value: Any, root: Path | None = None) -> np.ndarray:
    """uint8 (H, W, 3) from a PIL image, an array, encoded bytes, a `datasets` image dict or a file path.

    Files and bytes are read by `mtu.utils.images.open_image` within `training_max_side()`: a decompression bomb,
    a missing, truncated or garbage file is an `UnreadableSample` naming the file, never the end of the run.
    """
    if isinstance(value, dict):  # datasets Image feature with decode=False: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return _decode(io.BytesIO(value), "image bytes")
    if isinstance(value, (str, Path)):
        path = Path(value)
        path = path if path.is_absolute() or root is None else root / path
        return _decode(path, f"image {path}")
    if isinstance(value, Image.Image):
        return _decode(value, "image")
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 3:
        return value.astype(np.uint8)
    raise UnreadableSample(f"expected an image, got {type(value).__name__}")


def _decode(source: Any, what: str) -> np.ndarray:
    from mtu.utils.images import open_image
    from mtu.utils.images import to_rgb as convert

    limit = training_max_side()
    try:
        if isinstance(source, Image.Image):  # already decoded (by the caller): only its size is left to check
            check_image_size(*source.size, what=what, limit=limit)
            return np.asarray(convert(source))
        return np.asarray(open_image(source, what, max_side=limit))
    except Exception as error:  # noqa: BLE001
        # PIL's decoders raise many types on malformed files (struct.error, IndexError, EOFError, ...), and
        # open_image ValueErrors naming the file: either way it is this record that is bad, not the run.
        message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        raise UnreadableSample(message if what in message else f"cannot read {what}: {message}") from None


def pick_text(value: Any, rng: np.random.Generator) -> str:
    """A caption from a string, or one at random from a list (COCO has five per image); None -> ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        value = value[int(rng.integers(len(value)))]
    if not isinstance(value, str):
        raise UnreadableSample(f"expected text, got {type(value).__name__}")
    try:  # a JSON "\udcff" escape decodes to a lone surrogate, which the tokenizer cannot take
        return check_text(value, "text")
    except ValueError as error:
        raise UnreadableSample(str(error)) from None


def upsample(image: np.ndarray, resolution: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.Resampling.BICUBIC))
