"""Export an MTU pipeline as OpenVINO IR: the ONNX export's graphs converted, int8 through NNCF.

OpenVINO reads ONNX, so the export is the ONNX one (`write_onnx_folder`: one gather step for the all-tasks
denoiser, the same graphs, inputs and outputs), written to a scratch folder, each graph converted with
`openvino.convert_model` and saved as IR; the ONNX files are not kept. The folder:

    model_index.json                  components, plus "mtu_openvino": the ONNX manifest (tasks, input
                                      channels, opset), the OpenVINO version and, for int8, the quantization
    unet/openvino_model.xml (+ .bin)  sample, timestep, encoder_hidden_states[, task_id] -> out_sample
    text_encoder/, vae_encoder/, vae_decoder/   as in the ONNX folder, each an openvino_model.xml
    tokenizer/, scheduler/, */config.json       as diffusers saves them

`mtu.deploy.OpenVINOPipeline` runs it; OpenVINO's own API runs the graphs themselves (docs/deploy.md).

int8 (`--quantize`), the denoiser only (it runs at every sampler step; text encoder and VAE once per image):

- ``int8``: NNCF weight compression (`nncf.compress_weights`, INT8_ASYM, per output channel): the weights of
  every linear layer and convolution stored in 8 bits, activations float. No calibration.
- ``int8-static``: NNCF post-training quantization (`nncf.quantize`, transformer preset: SmoothQuant, fast
  bias correction) of linear layers, convolutions and attention products, weights and activations, with
  activation ranges calibrated on the denoiser inputs of Shapes sampling trajectories of every task the
  folder serves (`mtu.deploy.quantize.pipeline_calibration`, as int8-static does for ONNX).

Kept float in both, as for ONNX and for the same reasons: the input conv (the per-task conv table) and the
output conv (found by position: the conv reading `sample`, the conv writing `out_sample`), and the per-task
tables (every `Gather` of a constant: FFN hidden-unit scales, pre-FFN norm rows).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mtu.deploy.onnx_export import INDEX_KEY, check_exportable, require, write_onnx_folder
from mtu.deploy.onnx_pipeline import OPENVINO_KEY
from mtu.deploy.openvino_pipeline import XML, OpenVINOPipeline, require_openvino
from mtu.deploy.quantize import DYNAMIC, STATIC, check_mode, pipeline_calibration
from mtu.utils.outputs import check_target, write_folder

GRAPHS = ("unet", "text_encoder", "vae_encoder", "vae_decoder")
MODES = {
    DYNAMIC: "weights of linear layers and convolutions in 8 bits (NNCF weight compression), activations float",
    STATIC: "linear layers, convolutions and attention products in 8 bits, activations calibrated on Shapes",
}
KEPT_FLOAT = ["input conv (per-task table)", "output conv (noise prediction)", "per-task tables (Gather)"]


def export_openvino(
    pipe: Any,
    task: str,
    out: str | Path,
    overwrite: bool = False,
    quantize: str | None = None,
    threads: int | None = None,
) -> Path:
    """Write `task` of an `MTUPipeline` (or every task, `task="all"`) as an OpenVINO folder; returns its path.

    Args:
        quantize: None (float32), "int8" (weight compression) or "int8-static" (calibrated on Shapes); `MODES`.
        threads: OpenVINO threads of int8-static's calibration runs (default: all cores).
    """
    check_target(out, overwrite)  # before the export work
    require("onnx")  # the graphs are written as ONNX first
    require_openvino()
    channels = check_exportable(pipe, task)
    if quantize is not None:
        check_mode(quantize, list(channels))
        require_openvino("nncf")

    def write(folder: Path) -> None:
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            write_onnx_folder(pipe, task, Path(scratch))
            convert_folder(Path(scratch), folder)
        if quantize is not None:
            quantize_folder(folder, quantize, threads)

    return write_folder(out, write, overwrite)


def convert_folder(source: Path, folder: Path) -> None:
    """The ONNX folder `source` as an OpenVINO folder in `folder`: each graph converted, the rest moved over."""
    openvino = require_openvino()
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.startswith("model.onnx"):
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    for name in GRAPHS:
        model = openvino.convert_model(str(source / name / "model.onnx"))
        # compress_to_fp16 defaults to True: float32 weights are what the PyTorch model computes with
        openvino.save_model(model, str(folder / name / XML), compress_to_fp16=False)
        del model  # one graph in memory at a time (SD1.5's denoiser is 3.4 GB)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    manifest = index.pop(INDEX_KEY)
    index.update({"_class_name": "OpenVINOPipeline", OPENVINO_KEY: {**manifest, "openvino": openvino.__version__}})
    index_path.write_text(json.dumps(index, indent=2) + "\n")


def quantize_folder(folder: str | Path, mode: str, threads: int | None = None) -> dict:
    """Replace `folder/unet`'s float32 IR by its int8 version (NNCF) and record it in the manifest."""
    openvino = require_openvino()
    folder = Path(folder)
    check_mode(mode)
    calibration = None
    if mode == STATIC:  # recorded by the float32 folder itself: no onnxruntime needed
        calibration = pipeline_calibration(OpenVINOPipeline.from_openvino(folder, threads=threads))
    unet = folder / "unet" / XML
    quantized, entry = quantize_model(openvino.Core().read_model(str(unet)), mode, calibration)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        written = Path(scratch) / XML
        openvino.save_model(quantized, str(written), compress_to_fp16=False)
        del quantized
        for suffix in (".xml", ".bin"):
            os.replace(written.with_suffix(suffix), unet.with_suffix(suffix))
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index[OPENVINO_KEY]["quantization"] = entry
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return entry


def quantize_model(model: Any, mode: str, calibration: list[dict[str, np.ndarray]] | None = None) -> tuple[Any, dict]:
    """The int8 version of a denoiser `openvino.Model` (`MODES`), and what the manifest records of it.

    Args:
        calibration: int8-static only: the graph's input feeds ({name: array}) whose activation ranges are used.
    """
    nncf = require_openvino("nncf")
    check_mode(mode)
    if mode == DYNAMIC and calibration is not None:
        raise ValueError("int8 (weight compression) takes no calibration data; int8-static does")
    if mode == STATIC and not calibration:
        raise ValueError("int8-static needs calibration feeds (mtu.deploy.quantize.pipeline_calibration)")
    kept = kept_float(model)
    ignored = nncf.IgnoredScope(names=kept, types=["Gather"], validate=False)  # a one-task graph has no tables
    with _quiet_nncf(nncf):
        if mode == DYNAMIC:
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored)
        else:
            model = nncf.quantize(
                model,
                nncf.Dataset(calibration),
                subset_size=len(calibration),
                model_type=nncf.ModelType.TRANSFORMER,
                ignored_scope=ignored,
            )
    entry = {"mode": mode, "what": MODES[mode], "tool": f"nncf {nncf.__version__}", "kept_float": KEPT_FLOAT}
    return model, entry


def kept_float(model: Any) -> list[str]:
    """The names of the input and output convs of a denoiser `openvino.Model`, found by position.

    The input conv reads the parameter `sample`; the output conv writes `out_sample` (behind its bias `Add`).
    """
    inputs = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
        and any(port.get_node().get_friendly_name() == "sample" for port in map(_source, op.inputs()))
    ]
    outputs = []
    for result in model.get_results():
        node = _source(result.input(0)).get_node()
        for _ in range(4):  # Convolution -> Add (bias) [-> Reshape / Convert] -> Result
            if node.get_type_name() == "Convolution":
                outputs.append(node.get_friendly_name())
                break
            node = _source(node.input(0)).get_node()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "not a denoiser graph of mtu export --format openvino: expected one Convolution reading `sample` and "
            f"one writing `out_sample`, found {len(inputs)} and {len(outputs)}"
        )
    return [inputs[0], outputs[0]]


def _source(port: Any) -> Any:
    return port.get_source_output()


@contextlib.contextmanager
def _quiet_nncf(nncf: Any) -> Iterator[None]:
    """NNCF logs every ignored node at INFO; its warnings and errors still show."""
    logger = logging.getLogger("nncf")
    level = logger.level
    nncf.set_log_level(logging.WARNING)
    try:
        yield
    finally:
        nncf.set_log_level(level)
