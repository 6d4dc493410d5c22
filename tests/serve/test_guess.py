"""The rule-based task guesser: one table of requests and what they should run."""

import pytest

from mtu.serve import guess_task


@pytest.mark.parametrize(
    "text, has_image, has_mask, expected",
    [
        ("a red circle at the top left, on a gray background", False, False, "t2i"),
        ("a red circle at the top left, on a gray background", True, False, "t2i"),  # a caption: a new picture
        ("make the red circle blue", True, False, "edit"),
        ("Make it  BLUE", True, False, "edit"),
        ("turn the square into a triangle", True, False, "edit"),
        ("change the background to white", True, False, "edit"),
        ("replace the circle with a green square", True, False, "edit"),
        ("move the triangle to the top left", True, False, "edit"),
        ("make a red circle", False, False, "t2i"),  # "make a ...": a new picture, not an edit
        ("remove the blue square", True, False, "remove"),
        ("please get rid of the circle", True, False, "remove"),
        ("erase the triangle and make it nice", True, False, "remove"),  # remove outranks edit
        ("upscale this", True, False, "sr"),
        ("enhance", True, False, "sr"),
        ("increase the resolution", True, False, "sr"),
        ("", True, False, "sr"),  # an image alone: make it sharper
        ("fill the hole with a green triangle", True, True, "inpaint"),
        ("inpainting: a yellow circle", True, True, "inpaint"),
        ("a yellow circle", True, True, "inpaint"),  # a painted mask says inpaint
        ("make it yellow", True, True, "inpaint"),
        ("remove the circle", True, True, "remove"),  # words that name another task still win
        ("remove the circle", False, False, "remove"),  # no image: the caller says an image is needed
        ("a turntable", False, False, "t2i"),  # words, not substrings
    ],
)
def test_guess_task(text, has_image, has_mask, expected):
    assert guess_task(text, has_image, has_mask) == expected


def test_a_guess_the_model_does_not_serve_falls_back_to_t2i():
    assert guess_task("upscale this", True, tasks=["t2i", "edit"]) == "t2i"
    assert guess_task("upscale this", True, tasks=["edit"]) == "edit"
    assert guess_task("make it blue", True, tasks=["t2i", "edit"]) == "edit"


def test_a_task_of_the_users_own_takes_part_through_its_phrases():
    from mtu.config import BUILTIN_TASKS, TaskSpec

    depth = TaskSpec("depth2img", "image", phrases=("depth( map)?", "from (the|this) depth"))
    tasks = [BUILTIN_TASKS["t2i"], BUILTIN_TASKS["edit"], depth]
    assert guess_task("a scene from this depth map", True, tasks=tasks) == "depth2img"
    assert guess_task("make it blue", True, tasks=tasks) == "edit"
    assert guess_task("a red circle", True, tasks=tasks) == "t2i"
    quiet = TaskSpec("depth2img", "image")  # no phrases: only run when chosen
    assert guess_task("a scene from this depth map", True, tasks=[BUILTIN_TASKS["t2i"], quiet]) == "t2i"


def test_an_image_alone_goes_to_a_task_the_image_defines_whatever_its_name():
    from mtu.config import TaskSpec

    tasks = [TaskSpec("t2i", "none"), TaskSpec("sr2", "image", upscale=2, prompt="optional")]
    assert guess_task("", True, tasks=tasks) == "sr2"
    assert guess_task("", True, True, tasks=[*tasks, TaskSpec("fill", "masked_image")]) == "fill"
