"""Read a Shapes scene back from pixels: background, and each object's colour, shape and grid cell.

The parser is the judge of every Shapes metric, so it must be near-perfect on clean renders and degrade
gracefully on model outputs. It never raises on image content: whatever it cannot read it leaves out.

Method: the background is the median border colour (objects never touch the border); foreground pixels
are those far from it; each 4-connected foreground component large enough to be an object becomes one
object. Its colour is the nearest palette colour to its most saturated pixels; its shape comes from the
fill ratio area / (width * height) of its soft coverage (square 1, circle pi/4, triangle 1/2); its cell
from the coverage-weighted centroid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mtu.data.shapes.world import BACKGROUNDS, COLORS, HALF_WIDTH, IMAGE_SIZE, POSITIONS, Scene, ShapeObject

# Triangles skew about -0.57 (circle, square 0); square fills its box (1.0), a circle pi/4.
_TRIANGLE_SKEWNESS = -0.28
_CIRCLE_SQUARE_SPLIT = 0.86

# A component smaller than this fraction of a triangle (the smallest shape) is an edge fringe or noise.
_MIN_AREA_FRACTION = 0.3

_OBJECT_RGB = np.array(list(COLORS.values()), dtype=np.float64)
_BACKGROUND_RGB = np.array(list(BACKGROUNDS.values()), dtype=np.float64)


def _as_rgb_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 in 0-255 from uint8, or from float in [0, 1]; grey and RGBA are accepted too."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 3:
        raise ValueError(f"expected an (H, W, 3) image with H, W >= 3, got shape {array.shape}")
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.floating):
        return np.nan_to_num(array.astype(np.float64), nan=0.0).clip(0, 1) * 255
    return array.astype(np.float64)


def _nearest(rgb: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - rgb) ** 2).sum(axis=1)))


def _background(image: np.ndarray) -> tuple[str, np.ndarray]:
    """Name of the nearest background colour and the measured background RGB (median of the border)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    measured = np.median(border, axis=0)
    return list(BACKGROUNDS)[_nearest(measured, _BACKGROUND_RGB)], measured


def _foreground_threshold(background: str) -> float:
    # Under half the distance from this background to the nearest object colour, so an object's
    # anti-aliased edge joins it while blur and noise on the background stay below.
    distances = np.linalg.norm(_OBJECT_RGB - np.asarray(BACKGROUNDS[background], dtype=np.float64), axis=1)
    return 0.45 * float(distances.min())


def _vertical_skewness(alpha: np.ndarray) -> float:
    """Skewness of the coverage mass along y: about -0.57 for an upward triangle, 0 for circle and square.

    Blur adds variance but no third cumulant, so the sign and most of the size survive it.
    """
    ys = np.arange(alpha.shape[0], dtype=np.float64)
    mass = alpha.sum(axis=1)
    total = max(float(mass.sum()), 1e-6)
    mean = (mass * ys).sum() / total
    variance = (mass * (ys - mean) ** 2).sum() / total
    return float((mass * (ys - mean) ** 3).sum() / total / max(variance, 1e-6) ** 1.5)


def _shape_of(alpha: np.ndarray) -> str:
    """Shape from a soft coverage map (H, W) in [0, 1]: skewness for triangles, fill ratio for the rest."""
    # Contrast stretch around 0.5 silences background noise (which inflates the extents below) while
    # keeping the area of symmetric anti-aliased edges.
    alpha = ((alpha - 0.25) / 0.5).clip(0, 1)
    if _vertical_skewness(alpha) < _TRIANGLE_SKEWNESS:
        return "triangle"
    area = alpha.sum()
    # Projected extents: a column's (row's) peak coverage says how much of that column the shape spans.
    width, height = alpha.max(axis=0).sum(), alpha.max(axis=1).sum()
    fill = area / max(width * height, 1e-6)
    return "circle" if fill < _CIRCLE_SQUARE_SPLIT else "square"


def _cell(x: float, y: float, height: int, width: int) -> str:
    column = min(max(int(x // (width / 3)), 0), 2)
    row = min(max(int(y // (height / 3)), 0), 2)
    return POSITIONS[row * 3 + column]


def _read_object(
    image: np.ndarray, distance: np.ndarray, region: np.ndarray, others: np.ndarray, background_rgb: np.ndarray
) -> tuple[ShapeObject, float]:
    """One component -> (object, area). `region` is the component, `others` every other component."""
    values = distance[region]
    core = region & (distance >= 0.8 * np.percentile(values, 90))
    color_rgb = image[core].mean(axis=0)
    color = list(COLORS)[_nearest(color_rgb, _OBJECT_RGB)]
    # Soft coverage: where each pixel lies between the background and the object colour. Dilation takes
    # in the faint edge pixels the threshold left out, without stealing a neighbour's.
    window = ndimage.binary_dilation(region, iterations=2) & ~others
    direction = color_rgb - background_rgb
    alpha = ((image - background_rgb) @ direction) / max(float(direction @ direction), 1e-6)
    alpha = np.where(window, alpha.clip(0, 1), 0.0)
    rows, columns = np.nonzero(window)
    crop = alpha[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    total = max(float(alpha.sum()), 1e-6)
    ys, xs = np.indices(alpha.shape)
    centroid_x, centroid_y = (alpha * (xs + 0.5)).sum() / total, (alpha * (ys + 0.5)).sum() / total
    position = _cell(centroid_x, centroid_y, *alpha.shape)
    return ShapeObject(shape=_shape_of(crop), color=color, position=position), total


def parse_scene(image: np.ndarray) -> Scene:
    """Read the scene shown in an image.

    Args:
        image: (H, W, 3) uint8, or float in [0, 1] (a diffusers ``output_type="np"`` image); any size,
            the grid is the image split in thirds.

    Returns:
        Best-effort `Scene` with objects in row-major order; arbitrary images (noise, blank) give some
        background and possibly no objects. When two components fall in one cell, the larger is kept.

    Raises:
        ValueError: only for a wrong array shape, never for its content.
    """
    rgb = _as_rgb_float(image)
    height, width = rgb.shape[:2]
    background, background_rgb = _background(rgb)
    distance = np.linalg.norm(rgb - background_rgb, axis=2)
    labels, count = ndimage.label(distance > _foreground_threshold(background))
    min_area = _MIN_AREA_FRACTION * 2 * HALF_WIDTH**2 * (height * width) / IMAGE_SIZE**2
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    by_cell: dict[str, tuple[ShapeObject, float]] = {}
    for label in range(1, count + 1):
        if areas[label] < min_area:
            continue
        region = labels == label
        obj, area = _read_object(rgb, distance, region, (labels > 0) & ~region, background_rgb)
        if obj.position not in by_cell or by_cell[obj.position][1] < area:
            by_cell[obj.position] = (obj, area)
    objects = tuple(by_cell[p][0] for p in POSITIONS if p in by_cell)
    return Scene(background, objects)
