"""Shapes: a procedural world of coloured objects with exact ground truth for every MTU task.

`world` defines scenes, rendering and captions; `tasks` builds t2i / edit / sr / remove / inpaint / colorize pairs;
`degrade` holds the sr degradation and the inpainting mask generator (reusable on real images);
`parser` reads a scene back from pixels for evaluation; `vocabulary` lists every word the world can write.
"""

from mtu.data.shapes.degrade import degrade, random_mask
from mtu.data.shapes.parser import parse_scene
from mtu.data.shapes.tasks import TASKS, TaskExample, evaluation_set, make_example
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
    render,
    sample_scene,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "IMAGE_SIZE",
    "POSITIONS",
    "SHAPES",
    "TASKS",
    "Scene",
    "ShapeObject",
    "TaskExample",
    "caption",
    "degrade",
    "evaluation_set",
    "make_example",
    "parse_scene",
    "random_mask",
    "render",
    "sample_scene",
    "vocabulary",
]
