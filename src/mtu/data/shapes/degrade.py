"""Image degradations shared by the Shapes tasks and the trainer (which applies them to real images).

`degrade` is a one-stage Real-ESRGAN-style chain (blur -> downscale -> noise -> JPEG) for super-resolution
inputs; `random_mask` draws inpainting holes (boxes and free-form strokes); `grayscale` makes colorize inputs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# PIL filters a training degradation picks from when downscaling ("area" is BOX).
DOWNSCALE_FILTERS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


# ITU-R BT.601 luma weights (what PIL's convert("L") uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> its luma, rounded, in all three channels (uint8 (H, W, 3)): the colorize input.

    Kept as RGB so it enters the model through the same "image" conditioning as every other image task.
    """
    luma = np.asarray(image, dtype=np.float64) @ np.asarray(LUMA_WEIGHTS)
    return np.repeat(luma.round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@dataclass(frozen=True)
class Degradation:
    """One setting of the degradation chain (sigmas in pixels of the input, noise in 0-255 units)."""

    blur_sigma: float
    downscale_filter: str
    noise_sigma: float
    jpeg_quality: int


def evaluation_degradation(scale: int = 4) -> Degradation:
    """The fixed setting used for evaluation (training=False): mid-range values of the training ranges."""
    return Degradation(blur_sigma=0.25 * scale, downscale_filter="bicubic", noise_sigma=4.0, jpeg_quality=75)


def sample_degradation(rng: np.random.Generator, scale: int = 4) -> Degradation:
    """A random setting: blur sigma U(0.1, 0.5) * scale, any filter, noise U(0, 8), JPEG quality 50-95.

    The ranges are Real-ESRGAN's first stage, narrowed because the Shapes inputs are only 16x16.
    """
    return Degradation(
        blur_sigma=float(rng.uniform(0.1, 0.5) * scale),
        downscale_filter=str(rng.choice(list(DOWNSCALE_FILTERS))),
        noise_sigma=float(rng.uniform(0.0, 8.0)),
        jpeg_quality=int(rng.integers(50, 96)),
    )


def apply_degradation(image: np.ndarray, setting: Degradation, rng: np.random.Generator, scale: int) -> np.ndarray:
    """Run the chain with a given setting; `rng` only draws the noise. Returns uint8 (H//scale, W//scale, 3)."""
    if setting.downscale_filter not in DOWNSCALE_FILTERS:
        raise ValueError(
            f"unknown downscale filter {setting.downscale_filter!r}; valid options: {list(DOWNSCALE_FILTERS)}"
        )
    height, width = image.shape[:2]
    blurred = ndimage.gaussian_filter(image.astype(np.float32), sigma=(setting.blur_sigma, setting.blur_sigma, 0))
    small = Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8)).resize(
        (width // scale, height // scale), resample=DOWNSCALE_FILTERS[setting.downscale_filter]
    )
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0.0, setting.noise_sigma, size=(*small.size[::-1], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=setting.jpeg_quality
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def degrade(image: np.ndarray, rng: np.random.Generator, scale: int = 4, training: bool = True) -> np.ndarray:
    """Make a low-resolution input for x`scale` super-resolution from any RGB image.

    Args:
        image: uint8 (H, W, 3) with H, W >= scale; H and W need not be multiples of scale.
        rng: draws the setting (training) and the noise.
        scale: downscaling factor.
        training: True draws a random setting (`sample_degradation`); False uses the fixed
            `evaluation_degradation` (only the noise pattern then depends on rng).

    Returns:
        uint8 (H // scale, W // scale, 3).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got dtype {image.dtype} and shape {image.shape}")
    if scale < 1 or min(image.shape[:2]) < scale:
        raise ValueError(f"scale must be >= 1 and <= the image side, got scale {scale} for shape {image.shape}")
    setting = sample_degradation(rng, scale) if training else evaluation_degradation(scale)
    return apply_degradation(image, setting, rng, scale)


def _box(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    box_h = int(rng.integers(max(height // 6, 1), max(height // 2, 2)))
    box_w = int(rng.integers(max(width // 6, 1), max(width // 2, 2)))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    draw.rectangle((left, top, left + box_w - 1, top + box_h - 1), fill=1)


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    # A random walk of thick segments with round joints, like the free-form masks of LaMa / DeepFill v2.
    thickness = int(rng.integers(max(min(height, width) // 16, 1), max(min(height, width) // 6, 2) + 1))
    x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    for _ in range(int(rng.integers(2, 6))):
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.35) * max(height, width)
        nx = float(np.clip(x + length * np.cos(angle), 0, width - 1))
        ny = float(np.clip(y + length * np.sin(angle), 0, height - 1))
        draw.line((x, y, nx, ny), fill=1, width=thickness)
        r = thickness / 2
        draw.ellipse((nx - r, ny - r, nx + r, ny + r), fill=1)
        x, y = nx, ny


def random_mask(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """Draw an inpainting hole: 1-2 boxes (40%), 1-3 free-form strokes (40%) or both (20%).

    Args:
        rng: the only source of randomness.
        size: side of a square mask, or (height, width).

    Returns:
        uint8 (height, width) with 1 = region to fill; never empty.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if height < 2 or width < 2:
        raise ValueError(f"mask size must be at least 2x2, got {size}")
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    kind = rng.choice(["boxes", "strokes", "both"], p=[0.4, 0.4, 0.2])
    if kind in ("boxes", "both"):
        for _ in range(int(rng.integers(1, 3))):
            _box(draw, rng, height, width)
    if kind in ("strokes", "both"):
        for _ in range(int(rng.integers(1, 4))):
            _stroke(draw, rng, height, width)
    mask = np.asarray(canvas, dtype=np.uint8)
    if not mask.any():  # a degenerate stroke can miss every pixel centre
        mask = mask.copy()
        mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    return mask
