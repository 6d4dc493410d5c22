"""ONNX exports: one task (the folded denoiser) and every task in one graph, against the PyTorch MTU model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtu.deploy import OnnxPipeline, export_onnx
from mtu.deploy.onnx_export import export_denoiser, save_graph
from mtu.deploy.onnx_pipeline import OnnxGraph
from tests.core.tiny_models import relative_error
from tests.deploy.graphs import all_task_errors
from tests.deploy.graphs import denoiser_inputs as _inputs
from tests.helpers import TASKS, mtu_pipeline, request_for, tiny_sdxl_components

pytest.importorskip("onnxruntime")
STEPS = 3


def _run(graph: OnnxGraph, sample, timestep, text, **extra) -> torch.Tensor:
    return graph(sample=sample, timestep=timestep, encoder_hidden_states=text, **extra)[0]


@pytest.mark.parametrize("task", TASKS)  # conditioning none, image (x3) and masked_image
def test_one_task_graph_equals_the_mtu_model(pipe, tmp_path, task):
    model = pipe.unet
    export_denoiser(model.export(task).eval(), tmp_path / "unet", text_length=16)
    graph = OnnxGraph(tmp_path / "unet" / "model.onnx", threads=1)
    assert graph.input_names == ["sample", "timestep", "encoder_hidden_states"]
    sample, timestep, text = _inputs(model, [task] * 3)
    with torch.no_grad():
        expected = model(sample, timestep, text, task=task).sample
    assert relative_error(_run(graph, sample, timestep, text), expected) <= 1e-4


def test_all_tasks_graph_equals_the_mtu_model_for_every_task_and_a_mixed_batch(pipe, onnx_all):
    model = pipe.unet
    graph = OnnxGraph(onnx_all / "unet" / "model.onnx", threads=1)
    assert graph.input_names == ["sample", "timestep", "encoder_hidden_states", "task_id"]
    errors = all_task_errors(model, graph)
    assert max(errors.values()) <= 1e-4, errors


def test_the_folder_holds_what_a_runner_needs(onnx_all):
    names = sorted(str(path.relative_to(onnx_all)) for path in onnx_all.rglob("*") if path.is_file())
    for needed in (
        "model_index.json",
        "unet/model.onnx",
        "text_encoder/model.onnx",
        "vae_encoder/model.onnx",
        "vae_decoder/model.onnx",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer_config.json",
    ):
        assert needed in names
    manifest = json.loads((onnx_all / "model_index.json").read_text())["mtu_onnx"]
    assert manifest["task"] == "all" and [t["name"] for t in manifest["tasks"]] == TASKS
    assert manifest["task_channels"] == {"t2i": 4, "edit": 8, "sr": 8, "remove": 8, "inpaint": 9}


def _images(pipeline, tasks: list[str]) -> list[np.ndarray]:
    return pipeline.run_batch([request_for(task) for task in tasks], num_inference_steps=STEPS, output_type="np")


@pytest.mark.parametrize("task", TASKS)
def test_onnx_pipeline_makes_the_pytorch_pipelines_images(pipe, onnx_all, task):
    runner = OnnxPipeline.from_onnx(onnx_all, threads=1)
    runner.set_progress_bar_config(disable=True)
    (actual,), (expected,) = _images(runner, [task]), _images(pipe, [task])
    assert actual.shape == expected.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_onnx_pipeline_runs_a_mixed_task_batch(pipe, onnx_all):
    runner = OnnxPipeline.from_onnx(onnx_all, threads=1)
    runner.set_progress_bar_config(disable=True)
    tasks = ["t2i", "edit", "inpaint"]
    for actual, expected in zip(_images(runner, tasks), _images(pipe, tasks)):
        np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_a_one_task_folder_runs_its_task_and_names_it_for_others(pipe, tmp_path):
    folder = export_onnx(pipe, "inpaint", tmp_path / "inpaint")
    runner = OnnxPipeline.from_onnx(folder, threads=1)
    runner.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(_images(runner, ["inpaint"])[0], _images(pipe, ["inpaint"])[0], atol=1e-4)
    with pytest.raises(ValueError, match=r"this model serves \['inpaint'\]"):
        _images(runner, ["edit"])


def test_big_graphs_keep_their_weights_in_a_side_file(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr("mtu.deploy.onnx_graphs.EXTERNAL_DATA_BYTES", 0)  # what a >2 GiB model gets
    export_denoiser(pipe.unet.export("t2i").eval(), tmp_path / "unet", text_length=16)
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", "model.onnx", "model.onnx_data"]
    sample, timestep, text = _inputs(pipe.unet, ["t2i"])
    with torch.no_grad():
        expected = pipe.unet(sample, timestep, text, task="t2i").sample
    assert relative_error(_run(OnnxGraph(tmp_path / "unet" / "model.onnx"), sample, timestep, text), expected) <= 1e-4


def test_weights_scattered_over_many_files_are_copied_into_one(tmp_path):
    """How the tracer leaves a graph past 2 GiB: save_graph streams it, never loading every weight at once."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((3, 3)).astype(np.float32) for _ in range(3)]
    initializers = [numpy_helper.from_array(w, name=f"w{i}") for i, w in enumerate(weights)]
    nodes = [helper.make_node("Add", ["x", "w0"], ["a"]), helper.make_node("Add", ["a", "w1"], ["b"])]
    nodes.append(helper.make_node("Add", ["b", "w2"], ["y"]))
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [3, 3]) for name in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], initializers))
    (tmp_path / "traced").mkdir()
    onnx.save_model(
        model,
        str(tmp_path / "traced" / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    assert len(list((tmp_path / "traced").iterdir())) == 4  # the graph and one file per weight
    (tmp_path / "out").mkdir()
    save_graph(tmp_path / "traced" / "model.onnx", tmp_path / "out" / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx", "model.onnx_data"]
    loaded = onnx.load(str(tmp_path / "out" / "model.onnx"))
    for tensor, expected in zip(loaded.graph.initializer, weights, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), expected)
    bad = onnx.load(str(tmp_path / "out" / "model.onnx"), load_external_data=False)
    bad.graph.initializer[0].external_data[0].value = "../traced/w0"  # a location outside its folder is refused
    onnx.save_model(bad, str(tmp_path / "out" / "bad.onnx"))
    (tmp_path / "again").mkdir()
    with pytest.raises(ValueError, match="lies outside"):
        save_graph(tmp_path / "out" / "bad.onnx", tmp_path / "again" / "model.onnx")


def test_refusals(pipe, onnx_all, tmp_path):
    runner = OnnxPipeline.from_onnx(onnx_all, threads=1)
    with pytest.raises(ValueError, match="multiples of 2"):
        runner.unet(torch.zeros(1, 4, 5, 8), torch.tensor(1), torch.zeros(1, 16, 16), task="t2i")
    with pytest.raises(FileExistsError, match="already exists"):
        export_onnx(pipe, "t2i", onnx_all)
    with pytest.raises(ValueError, match="not an ONNX export of mtu"):
        OnnxPipeline.from_onnx(tmp_path)
    xl = mtu_pipeline(tiny_sdxl_components(tmp_path / "xl"))
    with pytest.raises(ValueError, match="SDXL is not supported yet"):
        export_onnx(xl, "t2i", tmp_path / "xl-onnx")
