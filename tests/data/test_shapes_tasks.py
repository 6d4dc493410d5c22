"""Shapes task pairs, degradation and masks."""

import numpy as np
import pytest

from mtu.data.shapes.degrade import degrade, random_mask
from mtu.data.shapes.tasks import TASKS, evaluation_rng, evaluation_set, make_example
from mtu.data.shapes.world import BACKGROUNDS, IMAGE_SIZE, caption, render

FULL = (IMAGE_SIZE, IMAGE_SIZE, 3)


@pytest.mark.parametrize("task", TASKS)
def test_examples_have_consistent_fields(task):
    rng = np.random.default_rng(0)
    for _ in range(20):
        example = make_example(task, rng)
        assert example.task == task and example.prompt
        assert example.target.shape == FULL and example.target.dtype == np.uint8
        np.testing.assert_array_equal(example.target, render(example.target_scene))
        if task == "t2i":
            assert example.image is None and example.mask is None
        else:
            expected = (16, 16, 3) if task == "sr" else FULL
            assert example.image.shape == expected and example.image.dtype == np.uint8
        if task in ("edit", "remove", "inpaint"):
            np.testing.assert_array_equal(example.image, render(example.scene))
        assert (example.mask is not None) == (task == "inpaint")


def test_make_example_is_deterministic():
    for task in TASKS:
        a, b = make_example(task, np.random.default_rng(5)), make_example(task, np.random.default_rng(5))
        assert a.prompt == b.prompt and a.target_scene == b.target_scene
        for x, y in [(a.image, b.image), (a.mask, b.mask)]:
            assert (x is None and y is None) or np.array_equal(x, y)


def test_edit_changes_exactly_one_thing():
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(200):
        example = make_example("edit", rng)
        before, after = example.scene, example.target_scene
        if before.background != after.background:
            kinds.add("background")
            assert before.objects == after.objects and after.background in example.prompt
            continue
        changed = set(before.objects) - set(after.objects)
        added = set(after.objects) - set(before.objects)
        assert len(changed) == 1 and len(added) == 1
        (old,), (new,) = changed, added
        differs = [f for f in ("shape", "color", "position") if getattr(old, f) != getattr(new, f)]
        assert len(differs) == 1
        kinds.add(differs[0])
        assert f"the {old.color} {old.shape}" in example.prompt
    assert kinds == {"background", "shape", "color", "position"}


def test_remove_drops_the_named_object():
    rng = np.random.default_rng(2)
    for _ in range(100):
        example = make_example("remove", rng)
        (removed,) = set(example.scene.objects) - set(example.target_scene.objects)
        assert len(example.target_scene.objects) == len(example.scene.objects) - 1
        assert f"the {removed.color} {removed.shape}" in example.prompt


def test_references_are_unambiguous_with_twins():
    from mtu.data.shapes.tasks import refer
    from mtu.data.shapes.world import Scene, ShapeObject

    twins = Scene("gray", (ShapeObject("circle", "red", "top left"), ShapeObject("circle", "red", "bottom")))
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = refer(twins, twins.objects[1], rng)
        assert text.startswith("the red circle ") and "bottom" in text


def test_t2i_and_inpaint_prompts_are_captions():
    for task in ("t2i", "inpaint", "sr"):
        example = make_example(task, np.random.default_rng(4))
        for obj in example.scene.objects:
            assert f"{obj.color} {obj.shape}" in example.prompt
        assert caption(example.scene)  # canonical form exists


def test_evaluation_set_is_fixed_held_out_and_prefix_stable():
    small, large = evaluation_set("edit", 5, seed=0), evaluation_set("edit", 20, seed=0)
    assert [e.prompt for e in small] == [e.prompt for e in large[:5]]
    assert [e.prompt for e in evaluation_set("edit", 5, seed=1)] != [e.prompt for e in small]

    # The evaluation streams are none of the streams a trainer gets from the same seed.
    def first_draws(rng):
        return tuple(rng.integers(0, 2**62, size=4))

    training = {first_draws(np.random.default_rng(0))}
    training |= {first_draws(np.random.default_rng(child)) for child in np.random.SeedSequence(0).spawn(64)}
    evaluation = {first_draws(evaluation_rng(task, 0, i)) for task in TASKS for i in range(64)}
    assert len(evaluation) == 64 * len(TASKS) and not training & evaluation
    # sr at evaluation uses the fixed degradation: same scene + rng state -> same input
    sr = evaluation_set("sr", 3, seed=0)
    np.testing.assert_array_equal(sr[0].image, evaluation_set("sr", 1, seed=0)[0].image)


def test_colorize_input_is_the_grayscale_scene_and_its_baseline_copies_it():
    from mtu.data.shapes.degrade import grayscale
    from mtu.evaluation.shapes_eval import evaluate_baseline

    example = make_example("colorize", np.random.default_rng(6))
    assert example.scene == example.target_scene and example.mask is None
    assert all(f"{obj.color} {obj.shape}" in example.prompt for obj in example.scene.objects)  # the caption
    np.testing.assert_array_equal(example.image, grayscale(example.target))
    assert (example.image == example.image[..., :1]).all() and not (example.target == example.target[..., :1]).all()
    baseline = evaluate_baseline("colorize", 8, seed=0)
    assert baseline["baseline"] == "copy the grayscale input" and baseline["color"] < 0.5 < baseline["shape"]


def test_colorize_is_appended_so_the_other_held_out_sets_do_not_move():
    # evaluation_rng keys a task's stream by its position in TASKS
    assert TASKS[:5] == ("t2i", "edit", "sr", "remove", "inpaint") and TASKS[-1] == "colorize"
    first = {  # example 0 of each test set, as before colorize existed
        "t2i": "a blue square at the top middle and a blue triangle at the bottom, on a gray background",
        "edit": "turn the red circle orange",
        "sr": "a purple triangle in the middle, on a beige background",
        "remove": "take away the green circle",
        "inpaint": "a green circle at the center and a yellow triangle on the left, black background",
    }
    assert {task: evaluation_set(task, 1, 0)[0].prompt for task in first} == first


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="unknown task 'bogus'.*t2i"):
        make_example("bogus", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown task"):
        evaluation_set("bogus", 1, 0)


def test_degrade_works_on_arbitrary_images():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(50, 37, 3), dtype=np.uint8)
    for training in (True, False):
        low = degrade(image, rng, scale=4, training=training)
        assert low.shape == (12, 9, 3) and low.dtype == np.uint8
    assert degrade(image, rng, scale=2).shape == (25, 18, 3)
    flat = np.full((64, 64, 3), BACKGROUNDS["gray"], dtype=np.uint8)
    # A flat image stays close to flat: degradation is blur + noise, not a colour shift.
    assert np.abs(degrade(flat, rng).astype(int) - 128).mean() < 10
    with pytest.raises(ValueError, match="uint8"):
        degrade(image.astype(np.float32), rng)


def test_degrade_training_settings_vary():
    image = render(make_example("t2i", np.random.default_rng(0)).target_scene)
    outputs = {degrade(image, np.random.default_rng(s)).tobytes() for s in range(5)}
    assert len(outputs) == 5


def test_random_mask_has_boxes_and_strokes():
    rng = np.random.default_rng(0)
    coverages = []
    for _ in range(200):
        mask = random_mask(rng, 64)
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1} and mask.any()
        coverages.append(mask.mean())
    assert 0.05 < np.mean(coverages) < 0.5
    assert random_mask(rng, (32, 48)).shape == (32, 48)
