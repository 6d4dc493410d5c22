"""The Shapes parser reads scenes back from pixels, near-perfectly on renders, gracefully otherwise."""

import numpy as np
import pytest
from scipy import ndimage

from mtu.data.shapes.parser import parse_scene
from mtu.data.shapes.world import Scene, ShapeObject, render, sample_scene


def _accuracy(num_scenes, corrupt, seed=123):
    """Per-attribute accuracy of parse_scene over random scenes (objects matched by cell)."""
    rng = np.random.default_rng(seed)
    hits = dict(background=0, count=0, scene=0, position=0, color=0, shape=0)
    num_objects = 0
    for _ in range(num_scenes):
        scene = sample_scene(rng)
        parsed = parse_scene(corrupt(render(scene), rng))
        hits["background"] += parsed.background == scene.background
        hits["count"] += len(parsed.objects) == len(scene.objects)
        hits["scene"] += parsed == scene
        for obj in scene.objects:
            found = parsed.object_at(obj.position)
            num_objects += 1
            hits["position"] += found is not None
            hits["color"] += found is not None and found.color == obj.color
            hits["shape"] += found is not None and found.shape == obj.shape
    per_object = ("position", "color", "shape")
    return {key: value / (num_objects if key in per_object else num_scenes) for key, value in hits.items()}


def _blur_and_noise(image, rng, sigma=1.0, noise=8.0):
    blurred = ndimage.gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0))
    return np.clip(blurred + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)


def test_parser_is_near_perfect_on_1000_renders():
    accuracy = _accuracy(1000, lambda image, rng: image)
    assert min(accuracy.values()) >= 0.99, accuracy


def test_parser_survives_mild_blur_and_noise():
    accuracy = _accuracy(300, _blur_and_noise, seed=7)
    assert min(accuracy.values()) >= 0.97, accuracy


def test_parser_accepts_float_images_and_other_sizes():
    scene = Scene("beige", (ShapeObject("triangle", "purple", "top"), ShapeObject("circle", "green", "right")))
    assert parse_scene(render(scene).astype(np.float32) / 255) == scene
    assert parse_scene(render(scene, size=96)) == scene
    assert parse_scene(render(scene, size=32)) == scene


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), dtype=np.uint8),
        np.full((64, 64, 3), 255, dtype=np.uint8),
        np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8),
        np.random.default_rng(1).random((48, 40, 3)),
        np.full((64, 64, 3), np.nan, dtype=np.float32),
        np.zeros((64, 64), dtype=np.uint8),
        np.zeros((3, 3, 4), dtype=np.uint8),
    ],
    ids=["black", "white", "noise", "float-noise", "nan", "grey", "rgba-tiny"],
)
def test_parser_never_crashes_on_arbitrary_images(image):
    scene = parse_scene(image)
    assert isinstance(scene, Scene)


def test_blank_image_has_no_objects():
    assert parse_scene(np.full((64, 64, 3), 128, dtype=np.uint8)) == Scene("gray", ())


def test_wrong_array_shape_raises():
    with pytest.raises(ValueError, match="expected an"):
        parse_scene(np.zeros((64, 64, 2), dtype=np.uint8))
