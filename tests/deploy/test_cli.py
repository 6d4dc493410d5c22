"""`mtu export --format onnx / single-file` and `mtu generate --runtime onnx` on a tiny base pipeline."""

from __future__ import annotations

import json

import PIL.Image
import pytest

from mtu.cli.main import main
from tests.helpers import generate_argv

pytest.importorskip("onnxruntime")


def test_export_all_tasks_as_onnx_then_generate_with_onnxruntime(workspace, capsys):
    out = workspace / "onnx"
    assert (
        main(["export", "--model", str(workspace / "mtu"), "--task", "all", "--format", "onnx", "--out", str(out)]) == 0
    )
    assert "--runtime onnx" in capsys.readouterr().out
    for task, extra in (("t2i", []), ("edit", ["--image", str(workspace / "image.png")])):
        pictures = workspace / "pictures" / task
        assert main(generate_argv(out, task, pictures, "--runtime", "onnx", *extra)) == 0
        assert [PIL.Image.open(p).size for p in pictures.glob("*.png")] == [(16, 16)]


def test_export_int8_onnx_then_generate(workspace):
    out = workspace / "onnx-int8"
    argv = [
        "export",
        "--model",
        str(workspace / "mtu"),
        "--task",
        "t2i",
        "--format",
        "onnx",
        "--quantize",
        "int8",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert json.loads((out / "model_index.json").read_text())["mtu_onnx"]["quantization"]["mode"] == "int8"
    pictures = workspace / "pictures" / "int8"
    assert main(generate_argv(out, "t2i", pictures, "--runtime", "onnx")) == 0
    assert len(list(pictures.glob("*.png"))) == 1


def test_export_single_file(workspace):
    out = workspace / "edit.safetensors"
    argv = ["export", "--model", str(workspace / "mtu"), "--task", "edit", "--format", "single-file", "--out", str(out)]
    assert main(argv) == 0 and out.is_file()
    assert main(argv) == 1  # exists: refused without --overwrite
    assert main([*argv, "--overwrite"]) == 0


def test_refusals_are_one_line(workspace, capsys):
    argv = ["export", "--model", str(workspace / "mtu"), "--task", "all", "--out", str(workspace / "x")]
    assert main(argv) == 1
    assert "--task all (one model for every task) exists for --format onnx and openvino only" in capsys.readouterr().err
    argv = ["export", "--model", str(workspace / "mtu"), "--task", "t2i", "--quantize", "int8", "--out", "x"]
    assert main(argv) == 1
    assert "--quantize exists for --format onnx and openvino only (got --format diffusers)" in capsys.readouterr().err
    argv = [
        "generate",
        "--runtime",
        "onnx",
        "--model",
        str(workspace / "mtu"),
        "--task",
        "t2i",
        "--out",
        str(workspace / "y"),
    ]
    assert main(argv) == 1
    assert "is not an ONNX export of mtu" in capsys.readouterr().err
