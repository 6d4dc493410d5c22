"""Every task end to end on the shipped shapes-base model, through MTUPipeline and through `mtu generate`."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from mtu.cli.main import main
from mtu.data.shapes.tasks import evaluation_set
from mtu.pipelines import MTUPipeline, MTURequest

TASKS = ("t2i", "edit", "sr", "remove", "inpaint")


@pytest.fixture(scope="module")
def examples():
    return {task: evaluation_set(task, 1, seed=0)[0] for task in TASKS}


def _inputs(example) -> dict:
    image = None if example.image is None else PIL.Image.fromarray(example.image)
    mask = None if example.mask is None else PIL.Image.fromarray(example.mask * 255)
    return {"image": image, "mask_image": mask}


def test_every_task_through_the_pipeline_on_shapes_base(examples):
    pipe = MTUPipeline.from_pretrained("shapes-base")
    pipe.set_progress_bar_config(disable=True)
    requests = [
        MTURequest(task, e.prompt, generator=torch.Generator().manual_seed(0), height=64, width=64, **_inputs(e))
        for task, e in examples.items()
    ]
    outputs = pipe.run_batch(requests, num_inference_steps=2, output_type="np")
    for task, images in zip(TASKS, outputs):
        assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all(), task


@pytest.mark.parametrize("task", TASKS)
def test_every_task_through_mtu_generate_on_shapes_base(tmp_path_factory, examples, task):
    root = tmp_path_factory.getbasetemp() / "shipped"
    if not (root / "mtu" / "mtu_config.json").is_file():
        assert main(["upcycle", "--base", "shapes-base", "--out", str(root / "mtu")]) == 0
    example, argv = examples[task], []
    for flag, image in (("--image", example.image), ("--mask", None if example.mask is None else example.mask * 255)):
        if image is not None:
            path = tmp_path_factory.mktemp(task) / f"{flag[2:]}.png"
            PIL.Image.fromarray(image).save(path)
            argv += [flag, str(path)]
    out = tmp_path_factory.mktemp(f"out-{task}")
    assert (
        main(
            [
                "generate",
                "--model",
                str(root / "mtu"),
                "--task",
                task,
                "--prompt",
                example.prompt,
                "--steps",
                "2",
                "--out",
                str(out),
                *argv,
            ]
        )
        == 0
    )
    assert [PIL.Image.open(p).size for p in out.glob("*.png")] == [(64, 64)]
