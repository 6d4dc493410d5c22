"""The Shapes world: palette, sampling, rendering, captions, vocabulary."""

import itertools

import numpy as np
import pytest

from mtu.data.shapes import tasks
from mtu.data.shapes.vocabulary import vocabulary
from mtu.data.shapes.world import (
    BACKGROUNDS,
    COLORS,
    IMAGE_SIZE,
    POSITIONS,
    SHAPES,
    Scene,
    ShapeObject,
    caption,
    cell_center,
    render,
    sample_scene,
    words,
)


def test_palette_is_well_separated():
    assert len(COLORS) >= 6 and len(BACKGROUNDS) >= 4
    palette = {**COLORS, **BACKGROUNDS}
    assert len(palette) == len(COLORS) + len(BACKGROUNDS), "a name is both an object and a background colour"
    for a, b in itertools.combinations(palette.values(), 2):
        assert np.linalg.norm(np.subtract(a, b)) > 80


def test_sample_scene_is_deterministic_and_valid():
    first = [sample_scene(np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = sample_scene(rng)
        assert 1 <= len(scene.objects) <= 3
        assert scene == scene.sorted()
    assert len(sample_scene(rng, num_objects=5).objects) == 5


def test_object_count_distribution():
    rng = np.random.default_rng(1)
    counts = np.bincount([len(sample_scene(rng).objects) for _ in range(4000)], minlength=4)[1:] / 4000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.2], atol=0.03)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ShapeObject("hexagon", "red", "top"), "unknown shape 'hexagon'"),
        (lambda: ShapeObject("circle", "pink", "top"), "unknown color 'pink'"),
        (lambda: ShapeObject("circle", "red", "up"), "unknown position 'up'"),
        (lambda: Scene("red", ()), "unknown background 'red'"),
        (lambda: Scene("gray", (ShapeObject("circle", "red", "top"),) * 2), "distinct grid cells"),
        (lambda: sample_scene(np.random.default_rng(0), num_objects=10), "num_objects"),
    ],
)
def test_invalid_values_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_render_is_deterministic_and_draws_objects_in_their_cells():
    scene = Scene("gray", (ShapeObject("square", "red", "top left"), ShapeObject("triangle", "blue", "bottom right")))
    image = render(scene)
    assert image.dtype == np.uint8 and image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_array_equal(image, render(scene))
    for obj in scene.objects:
        x, y = cell_center(obj.position)
        assert tuple(image[int(y) + 2, int(x)]) == COLORS[obj.color]
    assert tuple(image[0, 0]) == BACKGROUNDS["gray"]
    assert tuple(image[32, 32]) == BACKGROUNDS["gray"]  # empty centre cell
    assert render(scene, size=128).shape == (128, 128, 3)


def test_shapes_have_their_expected_areas():
    areas = {}
    for shape in SHAPES:
        image = render(Scene("black", (ShapeObject(shape, "yellow", "center"),)))
        areas[shape] = (np.abs(image.astype(int) - BACKGROUNDS["black"]).sum(axis=2) > 0).sum()
    # Half-width 8 px: square 16^2, circle pi 8^2, triangle 16^2 / 2 (plus anti-aliased edge pixels).
    assert 256 <= areas["square"] <= 300
    assert 190 <= areas["circle"] <= 240
    assert 120 <= areas["triangle"] <= 170


def test_canonical_caption():
    scene = Scene("gray", (ShapeObject("circle", "red", "top left"), ShapeObject("triangle", "blue", "bottom right")))
    assert (
        caption(scene) == "a red circle at the top left and a blue triangle at the bottom right, on a gray background"
    )
    three = Scene("white", scene.objects + (ShapeObject("square", "orange", "center"),))
    assert caption(three) == (
        "a red circle at the top left, a blue triangle at the bottom right and an orange square at the center, "
        "on a white background"
    )
    assert caption(Scene("black", ())) == "a plain black background"


def test_random_captions_name_every_attribute():
    rng = np.random.default_rng(3)
    for _ in range(300):
        scene = sample_scene(rng)
        text = caption(scene, rng)
        assert scene.background in text
        for obj in scene.objects:
            assert f"{obj.color} {obj.shape}" in text


def test_vocabulary_covers_every_generated_text():
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab) and all(word == word.lower() for word in vocab)
    rng = np.random.default_rng(11)
    seen = set()
    for index in range(1500):
        task = tasks.TASKS[index % len(tasks.TASKS)]
        # Skip the pixel work: only the text matters here.
        scene = sample_scene(rng)
        if task in ("edit", "remove"):
            text, _ = (tasks._edit if task == "edit" else tasks._remove)(scene, rng)
        else:
            text = caption(scene, rng)
        seen |= set(words(text))
        seen |= set(words(caption(scene)))
    seen |= set(words(caption(Scene("gray", ()), rng))) | set(words(caption(Scene("gray", ()))))
    assert seen <= vocab, f"words missing from vocabulary(): {sorted(seen - vocab)}"
    # Nearly all of the vocabulary is reachable (no dead words slipping in).
    assert len(vocab - seen) <= 2, sorted(vocab - seen)


def test_positions_grid():
    assert POSITIONS[4] == "center"
    assert cell_center("top left") == pytest.approx((64 / 6, 64 / 6))
    assert cell_center("bottom right", 96) == pytest.approx((80, 80))
