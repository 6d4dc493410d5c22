"""OpenVINO exports (`mtu export --format openvino`): float32 equal to the PyTorch MTU model, int8 (NNCF) close
to float32, one IR for every task, refusals in one line.

Tolerances, measured on these tiny random models (the bounds leave ~3x room): float32 against PyTorch,
relative error of a denoiser call ~7e-7 and pixel difference ~5e-7; int8 (weight compression) against the
float32 IR ~0.010 per call, ~0.004 in pixels after STEPS steps; int8-static (calibrated on 2 examples x 3
steps per task) ~0.05 per call, ~0.024 in pixels. Quality on Shapes per task is the benchmark's to measure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtu.cli.main import main
from mtu.deploy import OnnxPipeline, OpenVINOPipeline, export_openvino
from mtu.deploy.openvino_export import quantize_folder, quantize_model
from mtu.deploy.openvino_pipeline import XML, OpenVINOGraph
from mtu.deploy.quantize import record_feeds
from tests.core.tiny_models import relative_error
from tests.deploy.graphs import MIXED, all_task_errors
from tests.helpers import TASKS, generate_argv, mtu_pipeline, request_for

openvino = pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytestmark = pytest.mark.usefixtures("few_calibration_steps")
STEPS = 3
PROMPT = "a red circle"  # within the tiny tokenizer's 16 tokens
DENOISER_TOLERANCE = {None: 1e-4, "int8": 0.03, "int8-static": 0.15}
PIXEL_TOLERANCE = {None: 1e-4, "int8": 0.03, "int8-static": 0.1}


@pytest.fixture(scope="module")
def exports(pipe, tmp_path_factory):
    """Every task in float32 and both int8 modes, and one task. The int8 folders quantize copies of the float32
    one (what `export_openvino(..., quantize=)` does after converting; the command-line test runs that whole)."""
    root = tmp_path_factory.mktemp("openvino")
    folders = {("all", None): export_openvino(pipe, "all", root / "all")}
    for mode in ("int8", "int8-static"):
        folders["all", mode] = shutil.copytree(folders["all", None], root / f"all-{mode}")
        quantize_folder(folders["all", mode], mode, threads=1)
    folders["edit", None] = export_openvino(pipe, "edit", root / "edit")
    return folders


def _images(pipeline, tasks: list[str]) -> list[np.ndarray]:
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.run_batch([request_for(task) for task in tasks], num_inference_steps=STEPS, output_type="np")


def test_float32_ir_equals_the_mtu_model_for_every_task_and_a_mixed_batch(pipe, exports):
    graph = OpenVINOGraph(exports["all", None] / "unet" / XML, threads=1)
    assert graph.input_names == ["sample", "timestep", "encoder_hidden_states", "task_id"]
    errors = all_task_errors(pipe.unet, graph)
    assert max(errors.values()) <= DENOISER_TOLERANCE[None], errors


def test_float32_is_asked_for_explicitly(exports):
    """OpenVINO's CPU default on a CPU with bfloat16 (this one) is bfloat16: f32 must be set, bf16 only on request."""
    path = exports["edit", None] / "unet" / XML
    assert OpenVINOGraph(path, threads=1).model.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    bf16 = OpenVINOGraph(path, threads=1, precision="bf16")
    assert bf16.model.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16


def test_one_ir_serves_every_task_with_the_pytorch_pipelines_images(pipe, exports):
    runner = OpenVINOPipeline.from_openvino(exports["all", None], threads=1)
    for task, actual, expected in zip(MIXED, _images(runner, MIXED), _images(pipe, MIXED)):
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=PIXEL_TOLERANCE[None], err_msg=task)


def test_a_one_task_folder_runs_its_task_and_names_it_for_others(pipe, exports):
    runner = OpenVINOPipeline.from_openvino(exports["edit", None], threads=1)
    np.testing.assert_allclose(_images(runner, ["edit"])[0], _images(pipe, ["edit"])[0], atol=PIXEL_TOLERANCE[None])
    with pytest.raises(ValueError, match=r"this model serves \['edit'\]"):
        _images(runner, ["t2i"])


def test_the_folder_holds_ir_only_and_its_manifest(exports):
    folder = exports["all", None]
    names = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    for graph in ("unet", "text_encoder", "vae_encoder", "vae_decoder"):
        assert f"{graph}/openvino_model.xml" in names and f"{graph}/openvino_model.bin" in names
    assert not [name for name in names if "onnx" in name]  # converted, not a second copy
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "OpenVINOPipeline" and "mtu_onnx" not in index
    manifest = index["mtu_openvino"]
    assert manifest["task"] == "all" and [t["name"] for t in manifest["tasks"]] == TASKS
    assert manifest["task_channels"] == {"t2i": 4, "edit": 8, "sr": 8, "remove": 8, "inpaint": 9}


@pytest.mark.parametrize("mode", ["int8", "int8-static"])
def test_int8_is_close_to_float32_for_every_task(exports, mode):
    full, quantized = exports["all", None], exports["all", mode]
    assert json.loads((quantized / "model_index.json").read_text())["mtu_openvino"]["quantization"]["mode"] == mode
    expected_graph = OpenVINOGraph(full / "unet" / XML, threads=1)
    actual_graph = OpenVINOGraph(quantized / "unet" / XML, threads=1)
    feeds = record_feeds(OpenVINOPipeline.from_openvino(full, threads=1), [[request_for(t) for t in TASKS]], STEPS)
    for feed in feeds:
        inputs = {name: torch.from_numpy(value) for name, value in feed.items()}
        error = relative_error(actual_graph(**inputs)[0], expected_graph(**inputs)[0])
        assert 0 < error <= DENOISER_TOLERANCE[mode]
    images = {
        variant: _images(OpenVINOPipeline.from_openvino(exports["all", variant]), TASKS) for variant in (None, mode)
    }
    for task, actual, expected in zip(TASKS, images[mode], images[None]):
        assert np.isfinite(actual).all() and np.abs(actual - expected).max() <= PIXEL_TOLERANCE[mode], task


@pytest.mark.parametrize("mode", ["int8", "int8-static"])
def test_int8_keeps_the_input_and_output_convs_and_task_tables_float(exports, mode):
    model = openvino.Core().read_model(str(exports["all", mode] / "unet" / XML))

    def weight(op, index: int):  # the constant behind an input, through a FakeQuantize or decompression
        node = op.input(index).get_source_output().get_node()
        while node.get_type_name() != "Constant":
            node = node.input(0).get_source_output().get_node()
        return node.get_element_type()

    convs = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    kept = [op for op in convs if "conv_in" in op.get_friendly_name() or "conv_out" in op.get_friendly_name()]
    assert len(kept) == 2 and all(weight(op, 1) == openvino.Type.f32 for op in kept)
    assert any(weight(op, 1) in (openvino.Type.i8, openvino.Type.u8) for op in convs)
    tables = [op for op in model.get_ordered_ops() if op.get_friendly_name().endswith(("ff/Gather", "norm3/Gather"))]
    assert tables and all(weight(op, 0) == openvino.Type.f32 for op in tables)  # FFN scales, norm rows
    bin_bytes = {v: (exports["all", v] / "unet" / "openvino_model.bin").stat().st_size for v in (None, mode)}
    assert bin_bytes[mode] < 0.5 * bin_bytes[None]  # weights: ~0.35 on this model


def test_refusals(pipe, sd_components, onnx_all, exports, tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'; valid options: \['int8', 'int8-static'\]"):
        export_openvino(pipe, "all", tmp_path / "x", quantize="int4")
    custom = mtu_pipeline(sd_components, tasks=["t2i", {"name": "depth", "extra_channels": 1}])
    with pytest.raises(ValueError, match=r"Shapes world, which has no task \['depth'\]; use int8"):
        export_openvino(custom, "all", tmp_path / "depth", quantize="int8-static")
    assert not (tmp_path / "x").exists() and not (tmp_path / "depth").exists()
    with pytest.raises(ValueError, match="is an ONNX export of mtu, not an OpenVINO one: run it with --runtime onnx"):
        OpenVINOPipeline.from_openvino(onnx_all)
    with pytest.raises(
        ValueError, match="is an OpenVINO export of mtu, not an ONNX one: run it with --runtime openvino"
    ):
        OnnxPipeline.from_onnx(exports["all", None])
    with pytest.raises(ValueError, match=r"unknown OpenVINO precision 'f16'; valid options: \['bf16', 'f32'\]"):
        OpenVINOPipeline.from_openvino(exports["all", None], precision="f16")
    model = openvino.Core().read_model(str(exports["edit", None] / "unet" / XML))
    with pytest.raises(ValueError, match="int8-static needs calibration feeds"):
        quantize_model(model, "int8-static")
    with pytest.raises(ValueError, match="takes no calibration data"):
        quantize_model(model, "int8", calibration=[])


def test_export_all_tasks_as_int8_openvino_then_generate(workspace, capsys):
    out = workspace / "openvino"
    model = ["--model", str(workspace / "mtu"), "--task", "all", "--format", "openvino"]
    assert main(["export", *model, "--quantize", "int8", "--out", str(out)]) == 0
    assert "--runtime openvino" in capsys.readouterr().out
    assert json.loads((out / "model_index.json").read_text())["mtu_openvino"]["quantization"]["mode"] == "int8"
    for task, extra in (("t2i", ["--dtype", "bfloat16"]), ("edit", ["--image", str(workspace / "image.png")])):
        pictures = workspace / "openvino-pictures" / task
        assert main(generate_argv(out, task, pictures, "--runtime", "openvino", *extra)) == 0
        assert len(list(pictures.glob("*.png"))) == 1


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_command_line_refusals_are_one_line(workspace, onnx_all, capsys):
    model = ["--model", str(workspace / "mtu"), "--task", "t2i", "--format", "openvino", "--out", str(workspace / "x")]
    assert "--dtype: not for --format openvino (it is exported in float32" in _one_line_error(
        ["export", *model, "--dtype", "bfloat16"], capsys
    )
    with pytest.raises(SystemExit):
        main(["export", *model[:4], "--format", "tflite", "--out", str(workspace / "x")])
    assert "argument --format: invalid choice: 'tflite'" in capsys.readouterr().err.strip().splitlines()[-1]
    generate = generate_argv(workspace / "openvino-missing", "t2i", workspace / "y", "--runtime", "openvino")
    assert "--dtype float16: not for --runtime openvino" in _one_line_error([*generate, "--dtype", "float16"], capsys)
    assert "--device: not for --runtime openvino" in _one_line_error([*generate, "--device", "cpu"], capsys)
    generate = generate_argv(onnx_all, "t2i", workspace / "y", "--runtime", "openvino")
    assert "is an ONNX export of mtu, not an OpenVINO one" in _one_line_error(generate, capsys)
    assert not (workspace / "x").exists() and not (workspace / "y").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_during_openvino_generation_is_one_line_and_writes_nothing(exports, tmp_path, signum):
    """Ctrl-C / SIGTERM while `mtu generate --runtime openvino` denoises (in a process of its own: OpenVINO
    loaded, its own signal): one line, exit 128 + the signal (130, 143), no traceback, no PNG or temp file."""
    out = tmp_path / "pictures"
    argv = generate_argv(exports["all", None], "t2i", out, "--runtime", "openvino", "--num-images", "32")
    # Long enough to be interrupted while it denoises: on a quiet CI machine 8 images x 500 steps took ~2 s.
    argv[argv.index("--steps") + 1] = "999"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A shell's background job (`nohup make test &`) starts with SIGINT ignored, which the child would inherit
    # (Python then installs no Ctrl-C handler): give it the default disposition, as a terminal would.
    child = subprocess.Popen(
        [sys.executable, "-m", "mtu.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = bytearray()

    def read() -> None:
        for chunk in iter(lambda: child.stderr.read1(4096), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while b"/999 [" not in err and child.poll() is None and time.monotonic() < deadline:  # the sampler's progress
        time.sleep(0.05)
    time.sleep(0.2)
    assert child.poll() is None, err.decode(errors="replace")[-2000:]
    child.send_signal(signum)
    code = child.wait(120)
    reader.join(10)
    lines = [line.split("\r")[-1] for line in err.decode(errors="replace").strip().splitlines()]
    assert code == 128 + signum, lines[-5:]
    assert lines[-1] == "mtu generate: interrupted; only the PNGs listed above were written", lines[-5:]
    assert not any("Traceback" in line for line in lines)
    assert child.stdout.read() == b"" and not out.exists()  # nothing listed, nothing written


NO_MTU = """
import sys


class _NoMtu:  # the snippet must run where mtu is not installed
    def find_spec(self, name, path=None, target=None):
        if name == "mtu" or name.startswith("mtu."):
            raise ImportError("mtu is not installed here")


sys.meta_path.insert(0, _NoMtu())
"""


def test_the_docs_snippet_runs_an_export_without_mtu_and_makes_the_pipelines_image(exports, tmp_path):
    """docs/deploy.md's "Without mtu installed" loop, as written (only its folder changed), with `import mtu`
    blocked: the image `OpenVINOPipeline` makes with the same prompt, guidance, steps and seed."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    snippet = re.search(r"\*\*Without mtu installed\*\*.*?```python\n(.*?)```", page, re.S).group(1)
    folder = str(exports["all", None])
    code = snippet.replace('= "ov-all", "a red circle at the top left", 3.0, 25', f"= {folder!r}, {PROMPT!r}, 3.0, 25")
    assert code != snippet, "the snippet's first line changed: update this test"
    code = NO_MTU + code + f"\nnp.save({str(tmp_path / 'image.npy')!r}, image)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    image = (np.load(tmp_path / "image.npy")[0].transpose(1, 2, 0) / 2 + 0.5).clip(0, 1)
    pipeline = OpenVINOPipeline.from_openvino(folder, threads=1)
    pipeline.set_progress_bar_config(disable=True)
    sampler = {"guidance_scale": 3.0, "num_inference_steps": 25, "output_type": "np"}
    expected = pipeline("t2i", PROMPT, generator=torch.Generator().manual_seed(0), **sampler).images[0]
    assert np.abs(image - expected).max() <= 1e-5
