"""Example inputs to try every task in one command: `mtu generate --task edit --example`.

`mtu/assets/examples/` holds one Shapes scene at the size the Shapes models are trained on (64x64), its
16x16 low-resolution copy for sr (the evaluation's degradation, 1/4 a side), a mask over one of its objects
for inpaint, its grayscale copy for colorize, and `examples.json`: per task, its prompt and input files.
The prompts are those each task is trained with: a caption for t2i and inpaint, an instruction for edit and
remove, and the empty prompt for sr (the reproduction trains sr uncaptioned, so it reads its image).

The folder is written by `write_examples` (`python -c "from mtu.examples import write_examples;
write_examples()"`); this module's top imports are the standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtu.assets import ASSETS_DIR

EXAMPLES_DIR = ASSETS_DIR / "examples"
MANIFEST = "examples.json"


def example_inputs(task: str, folder: str | Path = EXAMPLES_DIR) -> dict:
    """`{"prompt": str, "image": Path | None, "mask": Path | None}` of `task`'s shipped example; ValueError
    naming the tasks that have one otherwise."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if task not in manifest:
        raise ValueError(f"no shipped example for task {task!r}; examples exist for {sorted(manifest)}")
    entry = manifest[task]
    return {
        "prompt": entry.get("prompt", ""),
        "image": folder / entry["image"] if entry.get("image") else None,
        "mask": folder / entry["mask"] if entry.get("mask") else None,
    }


def write_examples(folder: str | Path = EXAMPLES_DIR) -> Path:
    """Render the example scene and its inputs into `folder` and write the manifest; returns its path."""
    import numpy as np
    import PIL.Image

    from mtu.config import BUILTIN_TASKS
    from mtu.data.shapes.degrade import degrade, grayscale
    from mtu.data.shapes.world import IMAGE_SIZE, Scene, ShapeObject, caption, render

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scene = Scene("gray", (ShapeObject("circle", "red", "top left"), ShapeObject("square", "blue", "center")))
    image = render(scene)
    low = degrade(image, np.random.default_rng(0), scale=BUILTIN_TASKS["sr"].upscale, training=False)
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    mask[20:44, 20:44] = 255  # over the blue square in the center cell
    files = {"scene.png": image, "scene-16.png": low, "scene-mask.png": mask, "scene-gray.png": grayscale(image)}
    for name, array in files.items():
        PIL.Image.fromarray(array).save(folder / name)
    text = caption(scene)  # "a red circle at the top left and a blue square at the center, on a gray background"
    manifest = {
        "t2i": {"prompt": text},
        "edit": {"prompt": "make the red circle blue", "image": "scene.png"},
        "sr": {"prompt": "", "image": "scene-16.png"},
        "remove": {"prompt": "remove the blue square at the center", "image": "scene.png"},
        "inpaint": {"prompt": text, "image": "scene.png", "mask": "scene-mask.png"},
        "colorize": {"prompt": text, "image": "scene-gray.png"},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return folder / MANIFEST
