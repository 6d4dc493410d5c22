"""Reading user images: within the size limits of `mtu.utils.limits`, any PIL mode converted the same way everywhere.

The command line, the folder evaluation and the demo server all turn files into RGB through `to_rgb`, so a
16-bit PNG is scaled to 8 bits (not clipped to white) whichever entry point reads it.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import BinaryIO

import numpy as np
import PIL.Image

from mtu.utils.limits import check_image_size, check_pixel_count, max_pixels


def open_image(
    path: str | os.PathLike | BinaryIO, what: str | None = None, max_side: int | None = None
) -> PIL.Image.Image:
    """The image file at `path` (or an open binary file) as RGB; ValueError naming it when it is unreadable
    or has a side over `max_side` (default `mtu.utils.limits.max_side()`).

    The size is checked from the header, before the pixels are decoded, so an oversized file costs nothing.
    """
    what = what or f"image {path}"
    _allow_configured_size(max_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(path)
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        check_pixel_count(bomb_pixels(error) or max_pixels(max_side) + 1, what=what, limit=max_side)
        raise ValueError(f"refused: {what}: {error}") from None
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read {what}: {error}") from None
    with image:
        check_image_size(*image.size, what=what, limit=max_side)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt files raise any of these
            raise ValueError(f"cannot decode {what}: {error}") from None
        return to_rgb(image)


def bomb_pixels(error: Exception) -> int | None:
    """The pixel count in PIL's decompression-bomb error (PIL refuses before the header's size reaches us)."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None


def _allow_configured_size(max_side: int | None) -> None:
    # PIL has its own decompression-bomb threshold; when MTU_MAX_SIDE asks for more, ours is the one that counts.
    if PIL.Image.MAX_IMAGE_PIXELS is not None and PIL.Image.MAX_IMAGE_PIXELS < max_pixels(max_side):
        PIL.Image.MAX_IMAGE_PIXELS = max_pixels(max_side)


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB version of any PIL image: alpha flattened onto white, 16-bit and float scaled to 8 bits."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0)
        # 8-bit values stored wide stay as they are; 16-bit ones scale down; float images in [0, 1] scale up.
        full_scale = 1.0 if image.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
        gray = np.clip(values / full_scale * 255.0, 0, 255).round().astype(np.uint8)
        return PIL.Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")
