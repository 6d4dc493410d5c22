"""int8 ONNX denoisers (dynamic and Shapes-calibrated static): they export, load, run close to float32, and are smaller.

Tolerances are loose on purpose: 8 bits move a tiny random model's outputs by up to ~15% (static). The
quality that matters (Shapes metrics per task) is measured by the benchmark (`python -m benchmarks
--sections deploy --model DIR`), not here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mtu
from mtu.assets import resolve_model_path
from mtu.deploy import OnnxPipeline, export_onnx
from mtu.deploy.onnx_export import export_denoiser
from mtu.deploy.onnx_pipeline import OnnxGraph
from mtu.deploy.quantize import quantize_denoiser, record_feeds
from tests.core.tiny_models import relative_error
from tests.helpers import TASKS, mtu_pipeline, request_for

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
STEPS = 3
# Largest relative error of one int8 denoiser call against the float32 graph on the pipeline's own inputs,
# and largest pixel difference (images in [0, 1]) after STEPS sampler steps. Measured on these tiny random
# models: dynamic ~0.007 / ~0.005; static (activations too, calibrated on 2 examples x 3 steps) ~0.14 / ~0.09.
DENOISER_TOLERANCE = {"int8": 0.03, "int8-static": 0.3}
PIXEL_TOLERANCE = {"int8": 0.03, "int8-static": 0.2}
pytestmark = pytest.mark.usefixtures("few_calibration_steps")


@pytest.fixture(scope="module")
def exports(pipe, onnx_all, tmp_path_factory):
    """Float32 and int8 folders: every task (both modes) and one task (dynamic)."""
    root = tmp_path_factory.mktemp("int8")
    return {
        ("all", None): onnx_all,
        ("all", "int8"): export_onnx(pipe, "all", root / "all-int8", quantize="int8"),
        ("all", "int8-static"): export_onnx(pipe, "all", root / "all-int8-static", quantize="int8-static"),
        ("edit", None): export_onnx(pipe, "edit", root / "edit"),
        ("edit", "int8"): export_onnx(pipe, "edit", root / "edit-int8", quantize="int8"),
    }


def _feeds(folder, tasks: list[str]) -> list[dict[str, np.ndarray]]:
    """Denoiser inputs of a float32 folder's pipeline on the test requests (not the calibration examples)."""
    return record_feeds(OnnxPipeline.from_onnx(folder, threads=1), [[request_for(task) for task in tasks]], STEPS)


@pytest.mark.parametrize(("task", "mode"), [("all", "int8"), ("all", "int8-static"), ("edit", "int8")])
def test_int8_graph_is_close_to_float32(exports, task, mode):
    quantized, full = exports[task, mode], exports[task, None]
    manifest = json.loads((quantized / "model_index.json").read_text())["mtu_onnx"]
    assert manifest["quantization"]["mode"] == mode
    assert manifest["quantization"]["kept_float"] == ["input conv (per-task table)", "output conv (noise prediction)"]
    expected_graph = OnnxGraph(full / "unet" / "model.onnx", threads=1)
    actual_graph = OnnxGraph(quantized / "unet" / "model.onnx", threads=1)
    for feed in _feeds(full, TASKS if task == "all" else [task]):
        inputs = {name: torch.from_numpy(value) for name, value in feed.items()}
        assert 0 < relative_error(actual_graph(**inputs)[0], expected_graph(**inputs)[0]) <= DENOISER_TOLERANCE[mode]


def test_int8_keeps_the_input_and_output_convs_norms_and_task_tables_in_float32(exports):
    graph = onnx.load(str(exports["all", "int8-static"] / "unet" / "model.onnx")).graph
    float_convs = {node.name for node in graph.node if node.op_type == "Conv"}
    assert any("conv_in" in name for name in float_convs) and any("conv_out" in name for name in float_convs)
    assert not {"QLinearConv", "ConvInteger"} & {node.op_type for node in graph.node}  # the others are QDQ pairs
    weights = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type in ("Gather", "InstanceNormalization", "LayerNormalization"):
            for name in node.input:
                if name in weights:  # per-task tables (FFN scales, norm rows), norm weights: float32
                    assert weights[name].data_type == onnx.TensorProto.FLOAT, (node.name, name)
    dynamic = onnx.load(str(exports["all", "int8"] / "unet" / "model.onnx")).graph
    dynamic_ops = {node.op_type for node in dynamic.node}
    assert "MatMulInteger" in dynamic_ops and "ConvInteger" not in dynamic_ops
    # the attention products (both operands activations): float MatMul in int8, QDQ on both inputs in int8-static
    products = _activation_products(dynamic)["float"]
    assert products > 0 and _activation_products(dynamic) == {"float": products, "qdq": 0}
    assert _activation_products(graph) == {"float": 0, "qdq": products}


def _activation_products(graph) -> dict[str, int]:
    constants = {tensor.name for tensor in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}

    def constant(name: str) -> bool:  # a weight, or a weight behind its DequantizeLinear
        node = producer.get(name)
        return name in constants or (
            node is not None and node.op_type == "DequantizeLinear" and node.input[0] in constants
        )

    counts = {"float": 0, "qdq": 0}
    for node in graph.node:
        if node.op_type == "MatMul" and not any(constant(name) for name in node.input):
            kinds = {getattr(producer.get(name), "op_type", None) for name in node.input}
            counts["qdq" if kinds == {"DequantizeLinear"} else "float"] += 1
    return counts


@pytest.mark.parametrize("mode", ["int8", "int8-static"])
def test_onnx_pipeline_runs_every_task_of_an_int8_graph(pipe, exports, mode):
    images = {}
    for variant in (None, mode):
        runner = OnnxPipeline.from_onnx(exports["all", variant], threads=1)
        runner.set_progress_bar_config(disable=True)
        images[variant] = runner.run_batch(
            [request_for(task) for task in TASKS], num_inference_steps=STEPS, output_type="np"
        )
    for task, actual, expected in zip(TASKS, images[mode], images[None]):
        assert actual.shape == expected.shape and np.isfinite(actual).all(), task
        assert np.abs(actual - expected).max() <= PIXEL_TOLERANCE[mode], task


def test_int8_file_of_the_shipped_model_is_smaller(tmp_path):
    """On the tiny models a graph's nodes outweigh its weights; shapes-base (7.7M parameters) is mostly weights.

    Static quantization of shapes-base takes ~20 s (onnxruntime's QDQ pass is quadratic in the node count),
    so its file size is the benchmark's; here the tiny graphs' weight bytes stand for it.
    """
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(resolve_model_path("shapes-base"), subfolder="unet")
    model = mtu.upcycle(unet, mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=4)).eval()
    source = export_denoiser(model.export("edit").eval(), tmp_path / "float", text_length=77)
    assert quantize_denoiser(source, tmp_path / "int8.onnx", "int8")["mode"] == "int8"
    assert (tmp_path / "int8.onnx").stat().st_size < 0.8 * source.stat().st_size


def _weight_bytes(folder) -> int:
    return sum(len(tensor.raw_data) for tensor in onnx.load(str(folder / "unet" / "model.onnx")).graph.initializer)


@pytest.mark.parametrize(("mode", "fraction"), [("int8", 0.9), ("int8-static", 0.5)])
def test_int8_weights_are_smaller(exports, mode, fraction):
    assert _weight_bytes(exports["all", mode]) < fraction * _weight_bytes(exports["all", None])


def test_int8_of_a_graph_with_a_side_file(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr("mtu.deploy.onnx_graphs.EXTERNAL_DATA_BYTES", 0)  # what a >2 GiB model gets
    folder = export_onnx(pipe, "t2i", tmp_path / "t2i", quantize="int8")
    assert sorted(p.name for p in (folder / "unet").iterdir()) == ["config.json", "model.onnx", "model.onnx_data"]
    runner = OnnxPipeline.from_onnx(folder, threads=1)
    runner.set_progress_bar_config(disable=True)
    (image,) = runner.run_batch([request_for("t2i")], num_inference_steps=2, output_type="np")
    assert np.isfinite(image).all()


def test_refusals(pipe, sd_components, exports, tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'; valid options: \['int8', 'int8-static'\]"):
        export_onnx(pipe, "all", tmp_path / "x", quantize="int4")
    assert not (tmp_path / "x").exists()
    source = exports["all", None] / "unet" / "model.onnx"
    with pytest.raises(ValueError, match="needs calibration feeds"):
        quantize_denoiser(source, tmp_path / "model.onnx", "int8-static")
    with pytest.raises(ValueError, match="takes no calibration data"):
        quantize_denoiser(source, tmp_path / "model.onnx", "int8", calibration=[])
    custom = mtu_pipeline(sd_components, tasks=["t2i", {"name": "depth", "extra_channels": 1}])
    with pytest.raises(ValueError, match=r"Shapes world, which has no task \['depth'\]; use int8"):
        export_onnx(custom, "all", tmp_path / "depth", quantize="int8-static")
    assert not (tmp_path / "depth").exists()
