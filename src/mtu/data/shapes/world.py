"""The Shapes world: coloured geometric objects on a coloured background, on a 3x3 grid.

A scene is a background colour plus 1-3 objects, each with a shape, a colour and a grid cell (at most
one object per cell). Every object has the same fixed size (no size attribute): its half-width is
``HALF_WIDTH`` pixels at 64x64 (scaled with the image), centred in its cell, so a tiny model can
learn it and neighbouring objects never touch. Rendering is deterministic: anti-aliasing is done by a
fixed 4x4 supersampling, so the same scene always gives the same pixels.

Example:
    >>> rng = np.random.default_rng(0)
    >>> scene = sample_scene(rng)
    >>> image = render(scene)          # uint8 (64, 64, 3)
    >>> text = caption(scene)          # "a red circle at the top left, on a gray background"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Object colours, pairwise far apart in RGB so nearest-colour classification survives blur and noise.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 220, 30),
    "purple": (150, 40, 190),
    "orange": (250, 130, 20),
}

# Background colours, each far from every object colour (checked in the tests).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "beige": (215, 200, 160),
}

# The 3x3 grid, row-major; a position's index is row * 3 + column.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip

IMAGE_SIZE = 64

# Half-width of every object in pixels at IMAGE_SIZE; a cell is 64 / 3 = 21.3 px wide, so two objects
# in adjacent cells are >= 5 px apart.
HALF_WIDTH = 8.0

# How many objects `sample_scene` draws when not told: single-object scenes dominate so that the
# caption's attributes are easy to bind early in training.
NUM_OBJECTS_PROBABILITIES: dict[int, float] = {1: 0.5, 2: 0.3, 3: 0.2}

# Canonical phrase first; `caption(scene, rng)` picks among all of them.
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner"),
    "top": ("at the top", "at the top middle"),
    "top right": ("at the top right", "in the top right corner"),
    "left": ("on the left", "at the left"),
    "center": ("at the center", "in the center", "in the middle"),
    "right": ("on the right", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner"),
    "bottom": ("at the bottom", "at the bottom middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner"),
}

# "{}" is the background colour.
BACKGROUND_PHRASES: tuple[str, ...] = (
    ", on a {} background",
    " on a {} background",
    ", {} background",
    ". the background is {}",
)
EMPTY_SCENE_PHRASES: tuple[str, ...] = ("a plain {} background", "an empty {} background")

_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeObject:
    """One object: its shape (in `SHAPES`), colour (in `COLORS`) and grid cell (in `POSITIONS`)."""

    shape: str
    color: str
    position: str

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("color", self.color, tuple(COLORS))
        _check_choice("position", self.position, POSITIONS)


@dataclass(frozen=True)
class Scene:
    """A background colour (in `BACKGROUNDS`) and objects in distinct grid cells (possibly none)."""

    background: str
    objects: tuple[ShapeObject, ...]

    def __post_init__(self) -> None:
        _check_choice("background", self.background, tuple(BACKGROUNDS))
        cells = [obj.position for obj in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"objects must occupy distinct grid cells, got positions {cells}")

    def sorted(self) -> Scene:
        """The same scene with its objects in row-major grid order (the parser's order)."""
        return Scene(self.background, tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position))))

    def object_at(self, position: str) -> ShapeObject | None:
        """The object in cell `position`, or None when the cell is empty."""
        return next((obj for obj in self.objects if obj.position == position), None)


def _check_choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid options: {list(options)}")


def sample_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """Draw a random scene.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        num_objects: 1-9 objects; None draws 1, 2 or 3 with probabilities 0.5, 0.3, 0.2.

    Returns:
        A `Scene` with objects in distinct cells, sorted in row-major grid order. Two objects may
        share colour and shape (instructions then also name the position).
    """
    if num_objects is None:
        counts, probabilities = zip(*NUM_OBJECTS_PROBABILITIES.items())
        num_objects = int(rng.choice(counts, p=probabilities))
    if not 0 <= num_objects <= len(POSITIONS):
        raise ValueError(f"num_objects must be in 0..{len(POSITIONS)} or None, got {num_objects}")
    background = str(rng.choice(list(BACKGROUNDS)))
    cells = sorted(rng.choice(len(POSITIONS), size=num_objects, replace=False).tolist())
    objects = tuple(
        ShapeObject(shape=str(rng.choice(SHAPES)), color=str(rng.choice(list(COLORS))), position=POSITIONS[cell])
        for cell in cells
    )
    return Scene(background, objects)


def cell_center(position: str, size: int = IMAGE_SIZE) -> tuple[float, float]:
    """(x, y) pixel coordinates of the centre of grid cell `position` in a `size` x `size` image."""
    _check_choice("position", position, POSITIONS)
    row, column = divmod(POSITIONS.index(position), 3)
    cell = size / 3
    return (column + 0.5) * cell, (row + 0.5) * cell


def _coverage(shape: str, x: np.ndarray, y: np.ndarray, half: float) -> np.ndarray:
    """Boolean inside-mask of `shape` centred at the origin, on sample coordinates x, y."""
    if shape == "circle":
        return x**2 + y**2 <= half**2
    elif shape == "square":
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "triangle":
        # Upward isosceles triangle: apex (0, -half), base from (-half, half) to (half, half).
        return (y <= half) & (np.abs(x) <= (y + half) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid options: {list(SHAPES)}")


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw a scene.

    Args:
        scene: what to draw.
        size: output side in pixels; object size and positions scale with it.

    Returns:
        uint8 array (size, size, 3). Deterministic: edges are anti-aliased by 4x4 supersampling.
    """
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = BACKGROUNDS[scene.background]
    half = HALF_WIDTH * size / IMAGE_SIZE
    # Sample offsets inside a pixel, centred: (k + 0.5) / S for k in 0..S-1.
    offsets = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    for obj in scene.objects:
        cx, cy = cell_center(obj.position, size)
        x0, x1 = max(int(cx - half) - 1, 0), min(int(cx + half) + 2, size)
        y0, y1 = max(int(cy - half) - 1, 0), min(int(cy + half) + 2, size)
        xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).ravel() - cx
        ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).ravel() - cy
        inside = _coverage(obj.shape, xs[None, :], ys[:, None], half)
        # (H*S, W*S) -> (H, S, W, S) -> fraction of samples inside each pixel
        alpha = inside.reshape(y1 - y0, _SUPERSAMPLE, x1 - x0, _SUPERSAMPLE).mean(axis=(1, 3))[..., None]
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - alpha) + np.asarray(COLORS[obj.color], dtype=np.float64) * alpha
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _pick(options: tuple[str, ...], rng: np.random.Generator | None) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def with_article(noun_phrase: str) -> str:
    """ "a red circle", "an orange square"."""
    return ("an " if noun_phrase[:1] in "aeiou" else "a ") + noun_phrase


def describe_object(obj: ShapeObject, rng: np.random.Generator | None = None) -> str:
    """ "a red circle at the top left" (rng picks among the position phrasings; None: canonical)."""
    return f"{with_article(f'{obj.color} {obj.shape}')} {_pick(POSITION_PHRASES[obj.position], rng)}"


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Describe every attribute of a scene in words.

    Args:
        scene: the scene to describe.
        rng: None gives the canonical phrasing (objects in stored order, first phrase of each table);
            a generator shuffles the objects and picks position and background phrasings at random.

    Returns:
        e.g. "a red circle at the top left and a blue triangle at the bottom right, on a gray background".
    """
    if not scene.objects:
        return _pick(EMPTY_SCENE_PHRASES, rng).format(scene.background)
    objects = list(scene.objects)
    if rng is not None:
        objects = [objects[i] for i in rng.permutation(len(objects))]
    parts = [describe_object(obj, rng) for obj in objects]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return listed + _pick(BACKGROUND_PHRASES, rng).format(scene.background)


def words(text: str) -> list[str]:
    """Split text the way `vocabulary` counts words: lowercase, on whitespace, without , . punctuation."""
    return text.lower().replace(",", " ").replace(".", " ").split()
