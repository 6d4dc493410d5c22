"""Super-resolution inputs from real images: Real-ESRGAN's second-order degradation, built on the Shapes chain.

Real-ESRGAN degrades twice (blur -> resize -> noise -> JPEG, then again with milder settings) because
real low-resolution photos went through several lossy steps. `second_order_degrade` runs
`mtu.data.shapes.degrade`'s one-stage chain twice, splitting the scale factor between the stages.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mtu.data.shapes.degrade import apply_degradation, degrade, sample_degradation


def _split_scale(scale: int) -> tuple[int, int]:
    """(first, second) stage factors whose product is `scale`: half each way for even scales >= 4."""
    first = 2 if scale >= 4 and scale % 2 == 0 else 1
    return first, scale // first


def second_order_degrade(image: np.ndarray, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """Degrade `image` twice: a full-strength stage, then a milder one (half the blur and noise, better JPEG).

    Args:
        image: uint8 (H, W, 3), H and W >= scale.
        rng: draws both settings and the noise.
        scale: total downscaling factor.

    Returns:
        uint8 (about H / scale, about W / scale, 3) (each stage floors the size).
    """
    first, second = _split_scale(scale)
    low = degrade(image, rng, scale=first, training=True)
    mild = sample_degradation(rng, second)
    mild = replace(
        mild,
        blur_sigma=0.5 * mild.blur_sigma,
        noise_sigma=0.5 * mild.noise_sigma,
        jpeg_quality=min(95, mild.jpeg_quality + 10),
    )
    return apply_degradation(low, mild, rng, second)


def low_resolution_input(image: np.ndarray, rng: np.random.Generator, scale: int, second_order: bool) -> np.ndarray:
    """The degraded low-res version of a training target (first- or second-order), before resizing back up."""
    if second_order:
        return second_order_degrade(image, rng, scale)
    return degrade(image, rng, scale=scale, training=True)
