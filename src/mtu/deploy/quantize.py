"""int8 denoiser graphs: onnxruntime's post-training quantization of an exported `unet/model.onnx`.

Two modes (`MODES`):

- ``int8`` (dynamic): the weights of every linear layer with a constant weight (attention q/k/v/out,
  the FFN's input and output projections) are stored as 8-bit integers, one scale and zero point per
  output channel; activations are quantized on the fly, per call (`MatMulInteger`). No calibration.
- ``int8-static``: the linear layers and the 3x3 / 1x1 convolutions of the resnets, attention blocks and
  up/down samplers in QDQ form with activation ranges calibrated on denoiser inputs recorded along Shapes
  sampling trajectories of every task (`shapes_calibration`).

What stays float32, in both modes, and why:

- the input conv (the per-task conv table of an all-tasks graph) and the output conv: the first reads
  the raw latent and the task's conditioning, the second writes the noise prediction, which the sampler
  subtracts from the latent with no layer after it to absorb a rounding error;
- every normalization (GroupNorm, LayerNorm) and every per-task table (the FFN hidden-unit scales, the
  pre-FFN norm rows, the input conv table): onnxruntime would quantize a table's `Gather` by default, and
  a task's router scales are its whole specialisation; they are a few kilobytes;
- the timestep embedding and the resnets' time projections (`Gemm`, no integer kernel in onnxruntime,
  a negligible share of the FLOPs) and softmax;
- in the dynamic mode, the attention products Q K^T and P V (both operands are activations: onnxruntime's
  dynamic mode quantizes only a MatMul with a constant weight). The static mode quantizes them too, as
  onnxruntime's static mode does by default (QDQ on both activations; 52 of shapes-base's 182 MatMuls);
- in the dynamic mode, every convolution: onnxruntime's dynamic `ConvInteger` runs ~5x slower than its
  float convolution on this AVX2 CPU (one SD1.5 resnet conv, 320 channels at 64x64, one thread).

Weights are unsigned 8-bit (`QUInt8`): on x86 CPUs without VNNI, onnxruntime's u8 x s8 kernels add
pairs of products in saturating 16-bit registers, which on a shapes-base graph gave a relative output
error of 0.19 (0.012 with u8 weights, at the same speed).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mtu.deploy.onnx_graphs import DATA_FILE, INDEX_KEY, require, save_graph

DYNAMIC, STATIC = "int8", "int8-static"
MODES = {
    DYNAMIC: "linear-layer weights in 8 bits, activations quantized per call (no calibration)",
    STATIC: "linear layers and convolutions in 8 bits, activation ranges calibrated on Shapes trajectories",
}
# Calibration: examples per task and sampler steps each (every step's denoiser inputs are recorded).
CALIBRATION_EXAMPLES = 4
CALIBRATION_STEPS = 10
CALIBRATION_SEED = 20_251_130


def check_mode(mode: str, tasks: list[str] | None = None) -> str:
    """`mode` if it is one of `MODES` and can quantize a model of `tasks` (static calibrates on Shapes tasks only)."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization {mode!r}; valid options: {sorted(MODES)}")
    from mtu.data.shapes.tasks import TASKS

    unknown = [task for task in tasks or [] if task not in TASKS]
    if mode == STATIC and unknown:
        raise ValueError(
            f"int8-static calibrates on the Shapes world, which has no task {unknown}; use int8 (no calibration)"
        )
    return mode


def kept_float(graph: Any) -> dict[str, str]:
    """The convolutions kept float32 in both modes: {node name: why}, found by position, not by name.

    The input conv is the one that reads the graph input `sample`; the output conv writes `out_sample`.
    """
    inputs = [node.name for node in graph.node if node.op_type == "Conv" and "sample" in node.input]
    outputs = [node.name for node in graph.node if node.op_type == "Conv" and "out_sample" in node.output]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            "not a denoiser graph of mtu export --format onnx: expected one Conv reading `sample` and one "
            f"writing `out_sample`, found {len(inputs)} and {len(outputs)}"
        )
    return {inputs[0]: "input conv (per-task table)", outputs[0]: "output conv (noise prediction)"}


def quantize_denoiser(
    source: str | Path, target: str | Path, mode: str, calibration: Iterable[dict[str, np.ndarray]] | None = None
) -> dict:
    """Write the int8 version of the denoiser graph `source` to `target` (a `model.onnx` path).

    Args:
        mode: one of `MODES`.
        calibration: `int8-static` only: the graph's input feeds ({name: array}) whose activation
            ranges are recorded (`shapes_calibration` builds them from an ONNX folder).

    Returns:
        What the folder's manifest records: the mode, the quantized operator types, the layers kept float.
    """
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    check_mode(mode)
    if mode == DYNAMIC and calibration is not None:
        raise ValueError("int8 (dynamic) takes no calibration data; int8-static does")
    if mode == STATIC and calibration is None:
        raise ValueError("int8-static needs calibration feeds (mtu.deploy.quantize.shapes_calibration)")
    source, target = Path(source), Path(target)
    kept = kept_float(onnx.load(str(source), load_external_data=False).graph)
    options = {"per_channel": True, "weight_type": quantization.QuantType.QUInt8, "nodes_to_exclude": list(kept)}
    op_types = ["MatMul"] if mode == DYNAMIC else ["MatMul", "Conv"]
    with (
        _quiet_preprocessing_advice(),
        tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as scratch,
    ):
        quantized = Path(scratch) / "model.onnx"
        external = (source.parent / DATA_FILE).exists()  # > 2 GiB: both sides need a side file
        if mode == DYNAMIC:
            quantization.quantize_dynamic(
                source, quantized, op_types_to_quantize=op_types, use_external_data_format=external, **options
            )
        else:
            ranges = _calibrate(source, calibration, op_types, external, Path(scratch))
            quantization.quantize_static(
                source,
                quantized,
                None,  # the ranges come from the cache
                calibration_cache_path=ranges,
                quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                activation_type=quantization.QuantType.QUInt8,
                use_external_data_format=external,
                **options,
            )
        save_graph(quantized, target)
    return {"mode": mode, "quantized": op_types, "kept_float": sorted(kept.values())}


def _calibrate(
    source: Path, feeds: Iterable[dict[str, np.ndarray]], op_types: list[str], external: bool, scratch: Path
) -> Path:
    """The activation ranges of `source` over `feeds`, as onnxruntime's calibration cache (a JSON file).

    A step of its own, as quantize_static would run it: given the feeds, quantize_static keeps its loaded graph
    while the calibrator loads another copy and runs an inference session; from the cache it loads one graph.
    The calibrator stores a min and a max per tensor and feed, so no cap is needed (its CalibMaxIntermediateOutputs
    cap discards what was collected: onnxruntime 1.32). Its session's memory during a call still grows with the
    input: over 18 GB for SD1.5 at a 64x64 latent, split or not; calibrate big models on small inputs.
    """
    calibrate = require("onnxruntime.quantization.calibrate")
    calibrator = calibrate.create_calibrator(
        source, op_types, augmented_model_path=str(scratch / "augmented.onnx"), use_external_data_format=external
    )
    calibrator.collect_data(_Reader(feeds))
    ranges = calibrator.compute_data()
    del calibrator  # its graph and session, before quantize_static loads the graph again
    gc.collect()
    path = scratch / "ranges.json"
    calibrate.save_tensors_data(ranges, path)
    for augmented in scratch.glob("augmented*"):
        augmented.unlink()
    return path


@contextlib.contextmanager
def _quiet_preprocessing_advice() -> Iterator[None]:
    """Drop onnxruntime's root-logger advice to run its pre-processing (shape inference and fusions) first.

    The graphs are quantized as exported: the tests and the benchmark measure that, without pre-processing.
    """
    advice = logging.Filter()
    advice.filter = lambda record: "pre-processing" not in record.getMessage()  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an iterable of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def shapes_calibration(
    folder: str | Path, examples: int | None = None, steps: int | None = None, threads: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Denoiser feeds recorded while the float ONNX folder samples Shapes examples of each of its tasks.

    Examples are training-style draws (`make_example`), never the held-out evaluation sets; every
    denoiser call of `steps` sampler steps is recorded, guidance copies included, so the ranges cover
    the whole noise schedule. Defaults: `CALIBRATION_EXAMPLES` per task, `CALIBRATION_STEPS` steps.
    """
    from mtu.deploy.onnx_pipeline import OnnxPipeline

    return pipeline_calibration(OnnxPipeline.from_onnx(folder, threads=threads), examples, steps)


def pipeline_calibration(
    pipe: Any, examples: int | None = None, steps: int | None = None
) -> list[dict[str, np.ndarray]]:
    """`shapes_calibration` through any exported pipeline (`OnnxPipeline`, `OpenVINOPipeline`) of float32 graphs."""
    from mtu.data.shapes.tasks import make_example
    from mtu.evaluation.shapes_eval import example_request

    tasks = pipe.unet.task_names  # the tasks this folder runs (one, or every task of the model)
    check_mode(STATIC, tasks)
    rng = np.random.default_rng(CALIBRATION_SEED)
    count = examples or CALIBRATION_EXAMPLES
    batches = [
        [
            example_request(make_example(task, rng), CALIBRATION_SEED, index, {"guidance_scale": 3.0})
            for index in range(count)
        ]
        for task in tasks
    ]
    return record_feeds(pipe, batches, steps or CALIBRATION_STEPS)


def record_feeds(pipe: Any, batches: Iterable[list[Any]], steps: int) -> list[dict[str, np.ndarray]]:
    """Run each batch of `MTURequest`s through an exported pipeline, recording the feeds of every denoiser call."""
    from mtu.deploy.onnx_pipeline import as_feeds

    pipe.set_progress_bar_config(disable=True)
    graph, feeds = pipe.unet.graph, []

    def recording(**inputs: Any) -> Any:
        feeds.append(as_feeds(inputs))
        return graph(**inputs)

    pipe.unet.graph = recording
    try:
        for batch in batches:
            pipe.run_batch(batch, num_inference_steps=steps, output_type="np")
    finally:
        pipe.unet.graph = graph
    return feeds


def quantize_folder(folder: str | Path, mode: str, threads: int | None = None) -> dict:
    """Replace `folder/unet/model.onnx` (a float ONNX export) by its int8 version and record it in the manifest."""
    folder = Path(folder)
    check_mode(mode)
    calibration = shapes_calibration(folder, threads=threads) if mode == STATIC else None
    unet = folder / "unet"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        float_unet = Path(scratch)
        for path in unet.glob("model.onnx*"):
            path.rename(float_unet / path.name)
        entry = quantize_denoiser(float_unet / "model.onnx", unet / "model.onnx", mode, calibration)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index[INDEX_KEY]["quantization"] = entry
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return entry
