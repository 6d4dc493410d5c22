"""Export an MTU pipeline as ONNX: one task (the folded denoiser) or every task in one graph (task-id input).

The folder follows diffusers' ONNX layout and holds everything a runner needs:

    model_index.json         components, plus "mtu_onnx": the tasks, their input channels, the opset
    unet/model.onnx          sample, timestep, encoder_hidden_states[, task_id] -> out_sample
    text_encoder/model.onnx  input_ids -> last_hidden_state, pooler_output
    vae_encoder/model.onnx   sample (image in [-1, 1]) -> latent_parameters (mean and log-variance)
    vae_decoder/model.onnx   latent_sample -> sample
    tokenizer/, scheduler/   as diffusers saves them; unet/ and vae_*/ also hold their config.json

`mtu.deploy.OnnxPipeline` runs it with onnxruntime; any ONNX runtime can run the graphs themselves.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtu.deploy.gather import AllTaskDenoiser, build_all_task_denoiser
from mtu.deploy.onnx_graphs import INDEX_KEY, require, save_graph
from mtu.deploy.quantize import check_mode, quantize_folder
from mtu.utils.outputs import check_target, write_folder

OPSET = 17
ALL_TASKS = "all"


def export_onnx(pipe: Any, task: str, out: str | Path, overwrite: bool = False, quantize: str | None = None) -> Path:
    """Write `task` of an `MTUPipeline` (or every task, `task="all"`) as an ONNX folder; returns its path.

    Args:
        quantize: None (float32), or a mode of `mtu.deploy.quantize.MODES` for the denoiser graph:
            "int8" (weights of the linear layers, no calibration) or "int8-static" (linear layers and
            convolutions, calibrated on Shapes trajectories of every task). Text encoder and VAE stay float32.
    """
    check_target(out, overwrite)  # before the export work
    require("onnx")
    channels = check_exportable(pipe, task)
    if quantize is not None:
        check_mode(quantize, list(channels))
        require("onnxruntime")

    def write(folder: Path) -> None:
        write_onnx_folder(pipe, task, folder)
        if quantize is not None:
            quantize_folder(folder, quantize)

    return write_folder(out, write, overwrite)


def check_exportable(pipe: Any, task: str) -> dict[str, int]:
    """The input channels of each task the export of `task` serves ({name: channels}), or a one-line refusal."""
    if pipe.is_sdxl:
        raise ValueError("ONNX export covers the SD 1.x/2.x layout; SDXL is not supported yet")
    if pipe.unet.dtype != torch.float32:
        raise ValueError(f"ONNX export writes float32 graphs; load the model in float32 (it is {pipe.unet.dtype})")
    config = pipe.unet.mtu_config
    names = config.task_names if task == ALL_TASKS else [config.task_names[config.task_index(task)]]
    return {name: pipe.unet.task_in_channels(name) for name in names}


def write_onnx_folder(pipe: Any, task: str, folder: Path) -> None:
    """Every graph of the export of `task` (float32), its configs, tokenizer, scheduler and manifest, in `folder`.

    The one gather step of every graph format: `mtu.deploy.openvino_export` converts this folder's graphs.
    """
    model = pipe.unet
    channels = check_exportable(pipe, task)
    specs = [spec for spec in model.mtu_config.tasks if spec.name in channels]
    if task == ALL_TASKS:
        denoiser = build_all_task_denoiser(model)
    else:
        denoiser = model.export(task).eval().requires_grad_(False)
    export_denoiser(denoiser, folder / "unet", pipe.tokenizer.model_max_length)
    del denoiser  # before the other graphs: an SD1.5 copy is 3.4 GB
    export_text_encoder(pipe.text_encoder, folder / "text_encoder", pipe.tokenizer.model_max_length)
    export_vae(pipe.vae, folder)
    pipe.tokenizer.save_pretrained(folder / "tokenizer")
    pipe.scheduler.save_pretrained(folder / "scheduler")
    manifest = {"task": task, "tasks": [dataclasses.asdict(spec) for spec in specs], "task_channels": channels}
    index = _index(pipe, {**manifest, "opset": OPSET})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _index(pipe: Any, manifest: dict) -> dict:
    from mtu import __version__

    return {
        "_class_name": "OnnxPipeline",
        "_mtu_version": __version__,
        "unet": ["mtu.deploy", "OnnxDenoiser"],
        "text_encoder": ["mtu.deploy", "OnnxTextEncoder"],
        "vae_encoder": ["mtu.deploy", "OnnxVae"],
        "vae_decoder": ["mtu.deploy", "OnnxVae"],
        "tokenizer": ["transformers", type(pipe.tokenizer).__name__],
        "scheduler": ["diffusers", type(pipe.scheduler).__name__],
        INDEX_KEY: manifest,
    }


class _DenoiserGraph(nn.Module):
    """Positional tensors in, one tensor out: the shape of the graph a runner calls."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, sample, timestep, encoder_hidden_states, task_id=None):
        extra = {} if task_id is None else {"task_ids": task_id}
        return self.denoiser(sample, timestep, encoder_hidden_states, return_dict=False, **extra)[0]


@torch.no_grad()
def export_denoiser(denoiser: nn.Module, folder: Path, text_length: int) -> Path:
    """A UNet (`export(task)`) or an `AllTaskDenoiser` as `folder/model.onnx` plus its config.json."""
    config = denoiser.config
    all_tasks = isinstance(denoiser, AllTaskDenoiser)
    side = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
    device = next(denoiser.parameters()).device
    sample = torch.randn(2, config.in_channels, side, side, device=device)
    text = torch.randn(2, text_length, config.cross_attention_dim, device=device)
    inputs = [sample, torch.tensor([1.0, 500.0], device=device), text]
    names = ["sample", "timestep", "encoder_hidden_states"]
    axes = {
        "sample": {0: "batch", 2: "height", 3: "width"},
        "timestep": {0: "batch"},
        "encoder_hidden_states": {0: "batch", 1: "sequence"},
    }
    if all_tasks:  # two different tasks, so nothing can specialise on one
        inputs.append(torch.tensor([0, len(denoiser.task_names) - 1], device=device))
        names.append("task_id")
        axes["task_id"] = {0: "batch"}
    path = _export(_DenoiserGraph(denoiser), tuple(inputs), folder, names, ["out_sample"], axes)
    (denoiser.denoiser if all_tasks else denoiser).save_config(folder)
    return path


class _TextGraph(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids):
        output = self.encoder(input_ids, return_dict=True)
        return output.last_hidden_state, output.pooler_output


@torch.no_grad()
def export_text_encoder(encoder: nn.Module, folder: Path, text_length: int) -> Path:
    ids = torch.zeros(2, text_length, dtype=torch.long, device=next(encoder.parameters()).device)
    axes = {"input_ids": {0: "batch", 1: "sequence"}}
    outputs = ["last_hidden_state", "pooler_output"]
    return _export(_TextGraph(encoder.eval()), (ids,), folder, ["input_ids"], outputs, axes)


class _VaeEncoderGraph(nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample).latent_dist.parameters  # the distribution is rebuilt by the runner


class _VaeDecoderGraph(nn.Module):
    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


@torch.no_grad()
def export_vae(vae: nn.Module, folder: Path) -> None:
    """`folder/vae_encoder` and `folder/vae_decoder`, each with the VAE's config.json."""
    vae = vae.eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    device = next(vae.parameters()).device
    image = torch.randn(1, vae.config.in_channels, 4 * factor, 4 * factor, device=device)
    latent = torch.randn(1, vae.config.latent_channels, 4, 4, device=device)
    image_axes = {0: "batch", 2: "height", 3: "width"}
    _export(
        _VaeEncoderGraph(vae),
        (image,),
        folder / "vae_encoder",
        ["sample"],
        ["latent_parameters"],
        {"sample": image_axes},
    )
    _export(
        _VaeDecoderGraph(vae),
        (latent,),
        folder / "vae_decoder",
        ["latent_sample"],
        ["sample"],
        {"latent_sample": image_axes},
    )
    for name in ("vae_encoder", "vae_decoder"):
        vae.save_config(folder / name)


def _export(module: nn.Module, inputs: tuple, folder: Path, names: list[str], outputs: list[str], axes: dict) -> Path:
    """torch.onnx.export with the TorchScript tracer (`dynamo=False`), then one file (or one side file) per graph.

    The tracer needs no onnxscript and keeps dynamic batch / size axes through diffusers' models. Its
    warnings are expected (Python conditions on shapes are fixed at export; deprecation of the tracer).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        traced = Path(scratch) / "model.onnx"  # the tracer may scatter weights of a big graph into many files
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                inputs,
                str(traced),
                dynamo=False,
                opset_version=OPSET,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
            )
        save_graph(traced, path)
    return path
