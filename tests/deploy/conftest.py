"""A tiny SD MTU pipeline whose tasks really differ (every trainable weight moved), and its ONNX exports."""

from __future__ import annotations

import copy

import pytest
import torch

import mtu
from mtu.pipelines import MTUPipeline
from tests.helpers import box_mask, picture, request_for, tiny_sd_components  # noqa: F401 (re-exported to the tests)

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
