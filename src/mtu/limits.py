"""Bounds on what one call may ask for, shared by the pipeline, the command line and the server.

A diffusion call's memory grows with the image area and its time with the steps, so an unchecked number
(a 9000 px input, `--resolution 100000`, `--task sr` on a 512 px image) can take the whole machine. Every
entry point checks its numbers here before doing any work, with the same limits and the same messages.

    MTU_MAX_SIDE=2048 mtu generate ...   # raise the image side limit (inputs and outputs)

This module imports only the standard library: the command line checks arguments before loading torch.
"""

from __future__ import annotations

import math
import os

DEFAULT_MAX_SIDE = 1024
MAX_SIDE_VARIABLE = "MTU_MAX_SIDE"
# Diffusers schedulers have 1000 training timesteps; a sampler cannot take more steps than that.
MAX_STEPS = 1000
# Images one call generates (prompts x images per prompt): each is a full denoising batch entry.
MAX_IMAGES = 64
MAX_PORT = 65535  # TCP ports are 16-bit
# Training records are resized to the training resolution as they are read, so photos larger than the
# inference limit are ordinary data (DIV2K is 2040 px wide): only bombs beyond this side are refused.
TRAINING_MAX_SIDE = 8192


def max_side() -> int:
    """Largest image side (pixels) of any input or output: `MTU_MAX_SIDE`, else 1024. Read on every call."""
    raw = os.environ.get(MAX_SIDE_VARIABLE)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_SIDE
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_SIDE_VARIABLE}={raw!r} must be a whole number of pixels, e.g. 2048") from None
    if value < 1:
        raise ValueError(f"{MAX_SIDE_VARIABLE}={raw!r} must be >= 1")
    return value


def max_pixels(limit: int | None = None) -> int:
    """Largest image area (pixels): a square of `limit`, by default of `max_side()`."""
    return (limit or max_side()) ** 2


def training_max_side() -> int:
    """Largest side of a training record's image: `TRAINING_MAX_SIDE`, or `max_side()` when that is larger."""
    return max(TRAINING_MAX_SIDE, max_side())


def check_count(name: str, value: object, maximum: int | None = None) -> int:
    """`value` if it is a whole number in [1, maximum]; ValueError naming `name` otherwise."""
    too_big = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or too_big:
        bound = f"from 1 to {maximum}" if maximum is not None else ">= 1"
        raise ValueError(f"{name} must be a whole number {bound}, got {value!r}")
    return value


def check_steps(steps: object, name: str = "num_inference_steps") -> int:
    """Denoising steps: 1 to `MAX_STEPS` (0 divides by zero in the schedulers; negative ones ran no step)."""
    return check_count(name, steps, MAX_STEPS)


def check_side(name: str, value: object) -> int:
    """A requested image side (e.g. `--resolution`): 1 to `max_side()` pixels."""
    limit = max_side()
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise ValueError(f"refused: {name} {value} is over the limit of {limit} pixels a side ({_raise_hint(value)})")
    return check_count(name, value)


def check_image_size(width: int, height: int, what: str = "image", limit: int | None = None) -> None:
    """Refuse an image (input or output) that is empty or has a side over `limit` (default `max_side()`)."""
    if width < 1 or height < 1:
        raise ValueError(f"refused: {what} of {width} x {height} pixels is empty")
    limit = limit or max_side()
    if max(width, height) > limit:
        raise ValueError(
            f"refused: {what} of {width} x {height} pixels is over the limit of {limit} pixels a side "
            f"({_raise_hint(max(width, height))})"
        )


def check_pixel_count(pixels: int, what: str = "image", limit: int | None = None) -> None:
    """Refuse an image known only by its area (PIL's decompression-bomb errors give no width and height)."""
    limit = limit or max_side()
    if pixels > max_pixels(limit):
        raise ValueError(
            f"refused: {what} of {pixels:,} pixels is over the limit of {limit} x {limit} pixels "
            f"(set {MAX_SIDE_VARIABLE} to its longer side, at least {math.isqrt(pixels)}, to raise it)"
        )


def _raise_hint(side: int) -> str:
    return f"set {MAX_SIDE_VARIABLE}={side} to raise it"


def check_text(text: str, name: str = "prompt") -> str:
    """Text a tokenizer can read: valid UTF-8 (a byte string mis-decoded from argv holds lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {text!r} is not valid UTF-8 text: re-encode it as UTF-8") from None
    return text
