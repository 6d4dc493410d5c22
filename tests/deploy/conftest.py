"""A tiny SD MTU pipeline whose tasks really differ (every trainable weight moved), and its ONNX exports; an
upcycled tiny pipeline on disk for the command line; few calibration steps for int8-static."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from mtu.pipelines import MTUPipeline
from tests.helpers import mtu_pipeline, tiny_sd_components, upcycle_tiny_sd_pipeline


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


@pytest.fixture(scope="package")
def workspace(tmp_path_factory):
    """`mtu/`: an MTU folder of a tiny SD pipeline (with its base beside it); `image.png`: a 16x16 input."""
    root = tmp_path_factory.mktemp("deploy-cli")
    upcycle_tiny_sd_pipeline(root)
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "image.png")
    return root


@pytest.fixture(scope="package")
def few_calibration_steps():
    """int8-static calibrates on 2 examples per task x 3 sampler steps (default 4 x 10): seconds, not minutes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mtu.deploy.quantize.CALIBRATION_EXAMPLES", 2)
        patch.setattr("mtu.deploy.quantize.CALIBRATION_STEPS", 3)
        yield
