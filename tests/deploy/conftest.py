"""A tiny SD MTU pipeline whose tasks really differ (every trainable weight moved), and its ONNX exports."""

from __future__ import annotations

import copy

import numpy as np
import PIL.Image
import pytest
import torch

import mtu
from mtu.pipelines import MTUPipeline, MTURequest
from tests.helpers import tiny_sd_components

TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]


def perturbed(model: mtu.MTUModel, scale: float = 0.05) -> mtu.MTUModel:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def mtu_pipeline(components: dict, tasks=TASKS) -> MTUPipeline:
    components = dict(components)
    unet = copy.deepcopy(components["unet"])  # upcycle changes its model in place
    components["unet"] = perturbed(mtu.upcycle(unet, mtu.MTUConfig(tasks=tasks, num_experts=4)))
    pipe = MTUPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="package")
def sd_components(tmp_path_factory):
    return tiny_sd_components(tmp_path_factory.mktemp("deploy-sd"))


@pytest.fixture(scope="package")
def pipe(sd_components) -> MTUPipeline:
    return mtu_pipeline(sd_components)


@pytest.fixture(scope="package")
def onnx_all(pipe, tmp_path_factory):
    from mtu.deploy import export_onnx

    return export_onnx(pipe, "all", tmp_path_factory.mktemp("onnx") / "all")


def picture(seed: int, size: int = 16) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def box_mask(size: int = 16) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    return PIL.Image.fromarray(mask)


def request_for(task: str, seed: int = 0, **overrides) -> MTURequest:
    """A request of `task` with guidance on (so every guidance layout runs), seeded."""
    inputs = {
        "t2i": {"prompt": "a red circle"},
        "edit": {"prompt": "make it blue", "image": picture(1)},
        "sr": {"prompt": "", "image": picture(2, size=4)},
        "remove": {"prompt": "remove the circle", "image": picture(3)},
        "inpaint": {"prompt": "a red circle", "image": picture(4), "mask_image": box_mask()},
    }[task]
    settings = {"guidance_scale": 3.0, "image_guidance_scale": 1.5, "generator": torch.Generator().manual_seed(seed)}
    return MTURequest(task, **{**inputs, **settings, **overrides})
