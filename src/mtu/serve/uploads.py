"""Turning what users upload into RGB images and masks the model takes, or into a message saying why not."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from mtu.serve.limits import RequestError, ServeLimits
from mtu.utils.images import bomb_pixels, to_rgb

_FORMATS = "PNG, JPEG, WebP, GIF or BMP"


def load_upload(source: str | os.PathLike | PIL.Image.Image, limits: ServeLimits) -> PIL.Image.Image:
    """Open an uploaded file (or take an image) and return it as RGB, within `limits`.

    Transparent images are flattened onto white, palette / grayscale / 16-bit / CMYK images converted,
    animations reduced to their first frame.

    Raises:
        RequestError: the file is too large, not an image, unreadable, or over `limits.max_side`.
    """
    if isinstance(source, PIL.Image.Image):
        _check_side(source.size, limits)
        return to_rgb(source)
    path = Path(source)
    size = path.stat().st_size if path.is_file() else None
    if size is None:
        raise RequestError(f"the upload {path.name!r} did not arrive: attach it again")
    return _decode(path, path.name, size, limits)


def load_upload_bytes(data: bytes, name: str, limits: ServeLimits) -> PIL.Image.Image:
    """`load_upload` of an image received as bytes (the HTTP API's uploads and base64 fields), named `name`."""
    return _decode(io.BytesIO(data), name, len(data), limits)


def _decode(file, name: str, size: int, limits: ServeLimits) -> PIL.Image.Image:
    if size > limits.max_bytes:
        limit = _in_units(limits.max_bytes)
        raise RequestError(f"{name} is {_in_units(size)}; the limit is {limit}: upload a smaller image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(file)
            _check_side(image.size, limits)  # before decoding: the header is enough
            image.load()
    except RequestError:
        raise
    except (PIL.Image.DecompressionBombWarning, PIL.Image.DecompressionBombError) as error:
        pixels = bomb_pixels(error)
        counted = f" ({pixels:,} pixels)" if pixels else ""
        raise RequestError(
            f"{name} is too large{counted}; the limit is {limits.max_side} pixels a side: upload a smaller image"
        ) from None
    except PIL.UnidentifiedImageError:
        raise RequestError(f"{name} is not an image this server reads ({_FORMATS} are)") from None
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt files surface as any of these
        raise RequestError(f"{name} could not be decoded ({error}): upload it again or as PNG") from None
    return to_rgb(image)


def _in_units(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def _check_side(size: tuple[int, int], limits: ServeLimits) -> None:
    width, height = size
    if max(width, height) > limits.max_side:
        raise RequestError(
            f"the image is {width}x{height} pixels; the limit is {limits.max_side} pixels a side: resize it first"
        )
    if min(width, height) < 1:
        raise RequestError(f"the image is {width}x{height} pixels: it is empty")


def mask_from_layers(layers: Sequence[PIL.Image.Image] | None, size: tuple[int, int]) -> PIL.Image.Image | None:
    """The union of painted strokes as an "L" mask of `size` (white = fill), or None when nothing is painted.

    Args:
        layers: the image editor's paint layers (RGBA: painted where alpha > 0; others: where not black).
        size: (width, height) of the image the mask belongs to.
    """
    painted = None
    for layer in layers or ():
        if layer is None:
            continue
        bands = layer.getbands()
        strokes = np.asarray(layer.getchannel("A") if "A" in bands else layer.convert("L")) > 0
        if strokes.shape != (size[1], size[0]):
            strokes = np.asarray(PIL.Image.fromarray(strokes.astype(np.uint8)).resize(size, PIL.Image.NEAREST)) > 0
        painted = strokes if painted is None else painted | strokes
    if painted is None or not painted.any():
        return None
    return PIL.Image.fromarray(painted.astype(np.uint8) * 255)
