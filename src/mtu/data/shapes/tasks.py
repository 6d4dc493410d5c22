"""Task examples with exact targets in the Shapes world: t2i, edit, sr, remove, inpaint, colorize.

colorize (grayscale scene -> colour scene, with its caption) is not a task of the paper: it is the task
added to a trained model later (`MTUModel.add_task`, `mtu train` method add-task), so it comes last in
`TASKS` (the built-in tasks, `mtu.config.BUILTIN_TASKS`, in their order), leaving the other tasks'
held-out sets (indexed by task position) unchanged.

Each example carries the source scene and the target scene, so evaluation compares outputs with the
target both in pixels and in attributes read back by the parser.

Evaluation sets are held out by construction: example i of `evaluation_set(task, n, seed)` is drawn from
``SeedSequence(seed, spawn_key=(EVALUATION_SPAWN_KEY, task index, i))``, a stream that neither
``np.random.default_rng(seed)`` (empty spawn key) nor ``SeedSequence(seed).spawn(k)`` (keys (0,) ... (k-1,))
can produce for any practical k, so a trainer seeding its generator either way never sees them. It also
makes a smaller set a prefix of a larger one with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtu.config import BUILTIN_TASKS
from mtu.data.shapes.degrade import degrade, grayscale, random_mask
from mtu.data.shapes.world import (
    BACKGROUNDS,
    COLORS,
    IMAGE_SIZE,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    Scene,
    ShapeObject,
    caption,
    render,
    sample_scene,
    with_article,
)

TASKS: tuple[str, ...] = tuple(BUILTIN_TASKS)  # the world makes every built-in task (appended only: see above)
EDIT_KINDS: tuple[str, ...] = ("recolor", "reshape", "background", "move")
SR_SCALE = BUILTIN_TASKS["sr"].upscale
EVALUATION_SPAWN_KEY = 0x5EA1_0E7A  # large, so never a child index of SeedSequence.spawn
# Held-out splits of `evaluation_set`: test scores results; validation alone may choose settings.
# Different entropy, same spawn-key shape: disjoint streams, and both disjoint from training pools
# (`mtu.training.sources.pool_rng`) and fresh training draws (spawn keys (step, index)).
TEST_SEED = 0
VALIDATION_SEED = 1

# Phrasings per instruction type. Placeholders: {target} ("the red circle", with its position when the
# scene has another red circle), {color}, {shape}, {new} ("an orange square"), {background},
# {destination} ("to the top left").
INSTRUCTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolor": (
        "make {target} {color}",
        "turn {target} {color}",
        "change the colour of {target} to {color}",
        "change the color of {target} to {color}",
        "recolor {target} {color}",
        "paint {target} {color}",
    ),
    "reshape": (
        "turn {target} into a {shape}",
        "make {target} a {shape}",
        "change {target} into a {shape}",
        "replace {target} with {new}",
    ),
    "background": (
        "make the background {background}",
        "change the background to {background}",
        "change the background colour to {background}",
        "change the background color to {background}",
        "turn the background {background}",
        "paint the background {background}",
    ),
    "move": (
        "move {target} {destination}",
        "shift {target} {destination}",
        "slide {target} {destination}",
    ),
    "remove": (
        "remove {target}",
        "delete {target}",
        "erase {target}",
        "take away {target}",
        "get rid of {target}",
    ),
}

# Where "move" sends an object; canonical phrase first.
DESTINATION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("to the top left", "to the top left corner"),
    "top": ("to the top",),
    "top right": ("to the top right", "to the top right corner"),
    "left": ("to the left",),
    "center": ("to the center", "to the middle"),
    "right": ("to the right",),
    "bottom left": ("to the bottom left", "to the bottom left corner"),
    "bottom": ("to the bottom",),
    "bottom right": ("to the bottom right", "to the bottom right corner"),
}


@dataclass(frozen=True)
class TaskExample:
    """One training or evaluation pair.

    Attributes:
        task: one of `TASKS`.
        prompt: caption (t2i, sr, inpaint, colorize) or instruction (edit, remove).
        image: uint8 (H, W, 3) conditioning image; None for t2i. 16x16 for sr, the grayscale scene for
            colorize, the full scene otherwise.
        mask: uint8 (H, W), 1 = region to fill; inpaint only, else None.
        target: uint8 (64, 64, 3) exact desired output.
        scene: the scene the conditioning shows (for t2i, the one the caption describes).
        target_scene: the scene `target` shows.
    """

    task: str
    prompt: str
    image: np.ndarray | None
    mask: np.ndarray | None
    target: np.ndarray
    scene: Scene
    target_scene: Scene


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def refer(scene: Scene, obj: ShapeObject, rng: np.random.Generator) -> str:
    """An unambiguous reference: "the red circle", plus its position when another red circle exists."""
    twins = sum(o.color == obj.color and o.shape == obj.shape for o in scene.objects)
    noun = f"the {obj.color} {obj.shape}"
    # Sometimes name the position even when not needed, so the model learns to read it.
    if twins > 1 or rng.random() < 0.2:
        return f"{noun} {_pick(POSITION_PHRASES[obj.position], rng)}"
    return noun


def _other(options, current: str, rng: np.random.Generator) -> str:
    return str(_pick([o for o in options if o != current], rng))


def _edit(scene: Scene, rng: np.random.Generator) -> tuple[str, Scene]:
    """A random edit instruction for `scene` and the scene it asks for."""
    kind = str(_pick(EDIT_KINDS, rng))
    template = str(_pick(INSTRUCTION_TEMPLATES[kind], rng))
    if kind == "background":
        background = _other(list(BACKGROUNDS), scene.background, rng)
        return template.format(background=background), replace(scene, background=background)
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    target = refer(scene, obj, rng)
    if kind == "recolor":
        new = replace(obj, color=_other(list(COLORS), obj.color, rng))
        text = template.format(target=target, color=new.color)
    elif kind == "reshape":
        new = replace(obj, shape=_other(SHAPES, obj.shape, rng))
        text = template.format(target=target, shape=new.shape, new=with_article(f"{new.color} {new.shape}"))
    elif kind == "move":
        free = [p for p in POSITIONS if scene.object_at(p) is None]
        new = replace(obj, position=str(_pick(free, rng)))
        text = template.format(target=target, destination=_pick(DESTINATION_PHRASES[new.position], rng))
    else:
        raise ValueError(f"unknown edit kind {kind!r}; valid options: {list(EDIT_KINDS)}")
    objects = tuple(new if o is obj else o for o in scene.objects)
    return text, Scene(scene.background, objects).sorted()


def _remove(scene: Scene, rng: np.random.Generator) -> tuple[str, Scene]:
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    text = str(_pick(INSTRUCTION_TEMPLATES["remove"], rng)).format(target=refer(scene, obj, rng))
    return text, Scene(scene.background, tuple(o for o in scene.objects if o is not obj))


def make_example(task: str, rng: np.random.Generator, training: bool = True) -> TaskExample:
    """Draw one example of `task`.

    Args:
        task: one of `TASKS`.
        rng: the only source of randomness.
        training: only changes the sr degradation: random at training, the fixed evaluation setting otherwise.

    Returns:
        A `TaskExample` (images 64x64 except the 16x16 sr input). Scenes have 1-3 objects
        (`sample_scene`); removing the only object leaves a plain background.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    scene = sample_scene(rng)
    image = render(scene)
    if task == "t2i":
        return TaskExample(task, caption(scene, rng), None, None, image, scene, scene)
    elif task == "sr":
        low = degrade(image, rng, scale=SR_SCALE, training=training)
        return TaskExample(task, caption(scene, rng), low, None, image, scene, scene)
    elif task == "inpaint":
        return TaskExample(task, caption(scene, rng), image, random_mask(rng, IMAGE_SIZE), image, scene, scene)
    elif task == "colorize":  # red and purple have almost the same luma: the caption tells them apart
        return TaskExample(task, caption(scene, rng), grayscale(image), None, image, scene, scene)
    elif task == "edit":
        text, target_scene = _edit(scene, rng)
    elif task == "remove":
        text, target_scene = _remove(scene, rng)
    else:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    return TaskExample(task, text, image, None, render(target_scene), scene, target_scene)


def evaluation_rng(task: str, seed: int, index: int) -> np.random.Generator:
    """The generator of held-out example `index` of `task` (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid options: {list(TASKS)}")
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(EVALUATION_SPAWN_KEY, TASKS.index(task), index))
    )


def evaluation_set(task: str, num_samples: int, seed: int) -> list[TaskExample]:
    """The fixed held-out set of `task` (training=False examples).

    Args:
        task: one of `TASKS`.
        num_samples: how many examples; a smaller set is a prefix of a larger one.
        seed: selects the set.

    Returns:
        `num_samples` examples, identical across calls and machines.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return [make_example(task, evaluation_rng(task, seed, i), training=False) for i in range(num_samples)]
