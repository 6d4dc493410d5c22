"""MTUPipeline on tiny random components: every task, mixed batches, stock-pipeline equivalence, input checks."""

from __future__ import annotations

import copy

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

import mtu
from mtu.pipelines import MTUPipeline, MTURequest
from tests.helpers import (
    TASKS,
    box_mask,
    mtu_pipeline,
    perturb,
    picture,
    request_for,
    tiny_sd_components,
    tiny_sdxl_components,
)

STEPS = 3


@pytest.fixture(scope="module")
def sd_components(tmp_path_factory):
    return tiny_sd_components(tmp_path_factory.mktemp("sd"))


@pytest.fixture
def pipe(sd_components) -> MTUPipeline:
    return mtu_pipeline(sd_components)


def run(pipe: MTUPipeline, request: MTURequest) -> np.ndarray:
    return pipe.run_batch([request], num_inference_steps=STEPS, output_type="np")[0]


def test_a_task_of_the_users_scales_up_by_its_spec(sd_components):
    components = dict(sd_components)
    tasks = ["t2i", mtu.TaskSpec("sr2", "image", upscale=2, prompt="optional")]
    components["unet"] = mtu.upcycle(copy.deepcopy(components["unet"]), mtu.MTUConfig(tasks=tasks, num_experts=2))
    pipe = MTUPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    small = picture(0, size=8)
    assert run(pipe, MTURequest("sr2", image=small)).shape == (1, 16, 16, 3)  # 2x the input a side
    assert run(pipe, MTURequest("sr2", image=small, upscale=1)).shape == (1, 8, 8, 3)
    assert pipe.check_inputs(MTURequest("t2i", upscale=3)).height == 16  # upscale is for tasks that scale up


@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_end_to_end(pipe, task):
    images = run(pipe, request_for(task))
    assert images.shape == (1, 16, 16, 3) and np.isfinite(images).all()
    result = pipe(task, **{k: v for k, v in vars(request_for(task)).items() if k != "task"}, num_inference_steps=STEPS)
    assert isinstance(result.images[0], PIL.Image.Image)


def test_mixed_task_batch_equals_separate_calls(pipe):
    requests = [request_for(task, seed=i) for i, task in enumerate(TASKS)]
    together = pipe.run_batch(requests, num_inference_steps=STEPS, output_type="np")
    for task, batched, i in zip(TASKS, together, range(len(TASKS))):
        alone = run(pipe, request_for(task, seed=i))
        np.testing.assert_allclose(batched, alone, atol=1e-5, err_msg=task)


def test_prompt_batches_and_images_per_prompt(pipe):
    images = run(pipe, request_for("t2i", prompt=["a red circle", "a blue square"], num_images_per_prompt=2))
    assert images.shape == (4, 16, 16, 3)
    edits = run(pipe, request_for("edit", prompt=["make it blue", "make it red"], image=[picture(1), picture(2)]))
    assert edits.shape == (2, 16, 16, 3) and not np.allclose(edits[0], edits[1])


def test_inpaint_keeps_pixels_outside_the_mask(pipe):
    request = request_for("inpaint")
    output = run(pipe, request)[0]
    source = np.asarray(request.image, dtype=np.float32) / 255
    outside = np.asarray(request.mask_image) == 0
    np.testing.assert_allclose(output[outside], source[outside], atol=1e-5)
    assert np.abs(output[~outside] - source[~outside]).mean() > 0.01


def stock_pipeline(task: str, pipe: MTUPipeline, sd_components: dict):
    cls = {"t2i": StableDiffusionPipeline, "inpaint": StableDiffusionInpaintPipeline}.get(
        task, StableDiffusionInstructPix2PixPipeline
    )
    parts = {**sd_components, "unet": pipe.unet.export(task).eval()}
    stock = cls(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    return stock


@pytest.mark.parametrize("task", TASKS)
def test_exported_task_in_stock_pipeline_gives_the_same_image(pipe, sd_components, task):
    request = request_for(task, preserve_unmasked=False)
    expected = run(pipe, request)
    stock = stock_pipeline(task, pipe, sd_components)
    kwargs = {
        "prompt": request.prompt,
        "guidance_scale": request.guidance_scale,
        "num_inference_steps": STEPS,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(0),
    }
    if task in ("edit", "remove"):
        kwargs.update(image=request.image, image_guidance_scale=request.image_guidance_scale)
    elif task == "sr":
        # sr is InstructPix2Pix on the low-res image resized to the output size.
        upscaled = pipe.image_processor.resize(request.image, 16, 16)
        kwargs.update(image=upscaled, image_guidance_scale=request.image_guidance_scale)
    elif task == "inpaint":
        kwargs.update(image=request.image, mask_image=request.mask_image, height=16, width=16)
    np.testing.assert_allclose(stock(**kwargs).images, expected, atol=1e-4)


def test_loads_from_base_and_mtu_folders(tmp_path, sd_components):
    from tests.helpers import save_tiny_sd_pipeline

    base = save_tiny_sd_pipeline(tmp_path / "base")
    fresh = MTUPipeline.from_pretrained(base, config=mtu.MTUConfig(tasks=TASKS))
    perturb(fresh.unet, scale=0.05).save_pretrained(tmp_path / "mtu")
    loaded = MTUPipeline.from_pretrained(tmp_path / "mtu")  # on the base its config names
    # The older names are thin wrappers over from_pretrained.
    wrapped = [
        MTUPipeline.from_mtu(tmp_path / "mtu"),
        MTUPipeline.from_base(base, tmp_path / "mtu", allow_pickle=False),
    ]
    for p in (fresh, loaded, *wrapped):
        p.set_progress_bar_config(disable=True)
    expected = run(fresh, request_for("edit"))
    for pipe in (loaded, *wrapped):
        np.testing.assert_array_equal(run(pipe, request_for("edit")), expected)


@pytest.mark.parametrize(
    "request_kwargs, message",
    [
        ({"task": "colorize"}, "unknown task 'colorize'; this model serves"),
        ({"task": "edit", "image": None}, "task 'edit' needs image=..."),
        ({"task": "t2i", "image": picture(0)}, "task 't2i' takes no image"),
        ({"task": "inpaint", "mask_image": None}, "task 'inpaint' needs mask_image="),
        (
            {"task": "inpaint", "mask_image": box_mask(8)},
            r"mask_image is \(8, 8\) \(height, width\) but image is \(16, 16\)",
        ),
        ({"task": "edit", "image": picture(0, size=15)}, "height and width must be multiples of 2"),
        ({"task": "t2i", "height": 15, "width": 16}, "height and width must be multiples of 2"),
        ({"task": "edit", "prompt": ["a", "b", "c"], "image": [picture(0), picture(1)]}, "got 3 prompts for 2 images"),
        ({"task": "t2i", "prompt": ["a", "b"], "negative_prompt": ["x"]}, "got 1 negative prompts for 2 prompts"),
        ({"task": "t2i", "num_images_per_prompt": 0}, "num_images_per_prompt must be a whole number from 1 to 64"),
    ],
)
def test_bad_inputs_are_refused_before_any_compute(pipe, request_kwargs, message):
    task = request_kwargs["task"]
    base = vars(request_for(task if task in TASKS else "t2i"))
    request = MTURequest(**{**base, **request_kwargs})
    calls = []
    pipe.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        pipe.run_batch([request], num_inference_steps=STEPS)
    assert not calls


def test_requests_of_different_sizes_cannot_share_a_loop(pipe):
    with pytest.raises(ValueError, match="must share an output size"):
        pipe.run_batch([request_for("t2i"), request_for("t2i", height=8, width=8)])


def test_sdxl_layout_runs_every_task_and_batches(tmp_path):
    pipe = mtu_pipeline(tiny_sdxl_components(tmp_path))
    requests = [request_for(task, seed=i) for i, task in enumerate(TASKS)]
    together = pipe.run_batch(requests, num_inference_steps=STEPS, output_type="np")
    for i, task in enumerate(TASKS):
        alone = run(pipe, request_for(task, seed=i))
        assert alone.shape == (1, 16, 16, 3)
        np.testing.assert_allclose(together[i], alone, atol=1e-5, err_msg=task)
