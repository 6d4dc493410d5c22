"""A tiny SD MTU pipeline whose tasks really differ (every trainable weight moved), and its ONNX exports."""

from __future__ import annotations

import pytest

from mtu.pipelines import MTUPipeline
from tests.helpers import mtu_pipeline, tiny_sd_components


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
