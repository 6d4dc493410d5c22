"""`OnnxPipeline`: every task of an ONNX export (`mtu export --format onnx`) run with onnxruntime.

It is `MTUPipeline` with its networks swapped for onnxruntime sessions behind the same call signatures,
so requests are checked, tokenized, noised, conditioned (`mtu.conditioning`), guided, stepped and decoded
by the very code the PyTorch pipeline runs: same seeds, same layouts, same images up to float rounding.
Mixed-task batches (`run_batch`) need the all-tasks export (`--task all`).

The runtime is one small interface, `Graph` (input names; a call by input name, torch tensors in and out):
`OnnxGraph` here, `mtu.deploy.openvino_pipeline.OpenVINOGraph` for OpenVINO. Everything above it, the
denoiser / text encoder / VAE wrappers and the folder loading of `ExportedPipeline`, is shared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from diffusers.configuration_utils import FrozenDict

from mtu.config import MTUConfig
from mtu.deploy.onnx_graphs import INDEX_KEY, require
from mtu.pipelines.pipeline_mtu import MTUPipeline

OPENVINO_KEY = "mtu_openvino"  # the OpenVINO folder's manifest (`mtu.deploy.openvino_export`)
# The index key of each exported format's manifest: (what it is called, its `mtu export --format`, its loader).
FORMATS = {
    INDEX_KEY: ("ONNX", "onnx", "OnnxPipeline.from_onnx"),
    OPENVINO_KEY: ("OpenVINO", "openvino", "OpenVINOPipeline.from_openvino"),
}


class Graph(Protocol):
    """What a runtime provides: a network's input names, and a call by input name returning its outputs."""

    input_names: list[str]

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]: ...


def as_feeds(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Torch tensors as the contiguous CPU arrays a runtime reads."""
    return {name: np.ascontiguousarray(value.detach().cpu().numpy()) for name, value in inputs.items()}


class OnnxGraph:
    """One onnxruntime session called with torch tensors (by input name), returning torch tensors."""

    def __init__(self, path: Path, threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        onnxruntime = require("onnxruntime")
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the ONNX folder is incomplete (re-run mtu export --format onnx)"
            )
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_names = [value.name for value in self.session.get_inputs()]

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        device = next(iter(inputs.values())).device
        return [torch.from_numpy(array).to(device) for array in self.session.run(None, as_feeds(inputs))]


class OnnxDenoiser:
    """The denoiser graph (any `Graph`) behind `MTUModel`'s call signature (`task=` a name, or one per sample)."""

    dtype = torch.float32

    def __init__(self, graph: Graph, config: FrozenDict, mtu_config: MTUConfig, task_channels: dict[str, int]) -> None:
        self.graph, self.config, self.mtu_config = graph, config, mtu_config
        self.task_channels = dict(task_channels)
        self.all_tasks = "task_id" in graph.input_names
        # Sizes that need no upsample_size fix-up: the tracer fixed that Python branch at export.
        self.size_multiple = 2 ** (len(config.block_out_channels) - 1)

    @property
    def task_names(self) -> list[str]:
        return self.mtu_config.task_names

    def task_in_channels(self, task: str) -> int:
        return self.task_channels[self.mtu_config.tasks[self.mtu_config.task_index(task)].name]

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        added_cond_kwargs: dict | None = None,
        task: Any = None,
        return_dict: bool = True,
        **unused: Any,
    ):
        batch, channels, height, width = sample.shape
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"the exported denoiser takes latents whose sides are multiples of {self.size_multiple}, "
                f"got {height}x{width}: "
                "choose an output size that is a multiple of that times the VAE's downsampling"
            )
        names = (
            [task] * batch if isinstance(task, str) else [self.task_names[t] if isinstance(t, int) else t for t in task]
        )
        ids = torch.tensor([self.mtu_config.task_index(name) for name in names])
        widest = max(self.task_channels.values())
        inputs = {
            "sample": torch.nn.functional.pad(sample.float(), (0, 0, 0, 0, 0, widest - channels)),
            "timestep": torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch),
            "encoder_hidden_states": encoder_hidden_states.float(),
        }
        if self.all_tasks:
            inputs["task_id"] = ids
        noise = self.graph(**inputs)[0]
        if not return_dict:
            return (noise,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=noise)


class OnnxTextEncoder:
    dtype = torch.float32

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def __call__(self, input_ids: torch.Tensor, output_hidden_states: bool = False, **unused: Any):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if output_hidden_states:
            raise ValueError(
                "the exported text encoder returns the last hidden state only (the SDXL layout is not exported)"
            )
        last, pooled = self.graph(input_ids=input_ids.long())
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled)


class OnnxVae:
    """The VAE's encode / decode; the encoder graph returns the Gaussian's parameters, sampled here in torch
    (so a seeded generator draws exactly what the PyTorch pipeline draws)."""

    dtype = torch.float32

    def __init__(self, encoder: Graph, decoder: Graph, config: FrozenDict) -> None:
        self.encoder, self.decoder, self.config = encoder, decoder, config

    def encode(self, sample: torch.Tensor, return_dict: bool = True):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
        from diffusers.models.modeling_outputs import AutoencoderKLOutput

        distribution = DiagonalGaussianDistribution(self.encoder(sample=sample.float())[0])
        return AutoencoderKLOutput(latent_dist=distribution) if return_dict else (distribution,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, **unused: Any):
        from diffusers.models.autoencoders.vae import DecoderOutput

        image = self.decoder(latent_sample=latents.float())[0]
        return DecoderOutput(sample=image) if return_dict else (image,)


class ExportedPipeline(MTUPipeline):
    """`MTUPipeline` over an exported folder's graphs, whatever runs them: `OnnxPipeline`, `OpenVINOPipeline`."""

    @staticmethod
    def _check_denoiser(unet: Any) -> None:
        """Any denoiser behind `MTUModel`'s call signature: the loaders pass an `OnnxDenoiser`."""

    @classmethod
    def _from_folder(cls, folder: str | Path, key: str, make_graph: Callable[[Path], Graph]) -> ExportedPipeline:
        """Load a folder whose model_index.json holds the manifest `key`; `make_graph(folder / name)` opens a graph."""
        import diffusers
        from transformers import AutoTokenizer

        folder = Path(folder)
        index = read_index(folder, key)
        manifest = index[key]

        def config(name: str) -> FrozenDict:
            return FrozenDict(json.loads((folder / name / "config.json").read_text()))

        unet = OnnxDenoiser(
            make_graph(folder / "unet"), config("unet"), MTUConfig(tasks=manifest["tasks"]), manifest["task_channels"]
        )
        vae = OnnxVae(make_graph(folder / "vae_encoder"), make_graph(folder / "vae_decoder"), config("vae_decoder"))
        scheduler_class = getattr(diffusers, index["scheduler"][1], None)
        if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, diffusers.SchedulerMixin)):
            raise ValueError(f"{folder / 'model_index.json'}: unknown scheduler {index['scheduler'][1]!r}")
        return cls(
            vae=vae,
            text_encoder=OnnxTextEncoder(make_graph(folder / "text_encoder")),
            tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
            unet=unet,
            scheduler=scheduler_class.from_pretrained(folder / "scheduler"),
        )


def read_index(folder: Path, key: str) -> dict:
    """The folder's model_index.json if it holds the manifest `key`; else one line naming what the folder is."""
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except ValueError:
        index = {}
    name, export_format, _ = FORMATS[key]
    if isinstance(index, dict) and isinstance(index.get(key), dict):
        manifest, scheduler = index[key], index.get("scheduler")
        whole = isinstance(manifest.get("tasks"), list) and isinstance(manifest.get("task_channels"), dict)
        if not whole or not (isinstance(scheduler, list) and len(scheduler) == 2):
            raise ValueError(
                f"{index_path}: its {key!r} manifest lacks the tasks, their channels or the scheduler (an empty or "
                f"edited index); write the folder again with `mtu export --format {export_format}`"
            )
        return index
    other = next((FORMATS[k] for k in FORMATS if isinstance(index, dict) and k in index), None)
    if other is not None:
        raise ValueError(
            f"{folder} is an {other[0]} export of mtu, not an {name} one: run it with --runtime {other[1]} ({other[2]})"
        )
    raise ValueError(
        f"{folder} is not an {name} export of mtu (no {key!r} in model_index.json); "
        f"write one with `mtu export --format {export_format}`"
    )


class OnnxPipeline(ExportedPipeline):
    """`MTUPipeline` over an ONNX folder: `OnnxPipeline.from_onnx(folder)("edit", "make it blue", image=...)`."""

    @classmethod
    def from_onnx(
        cls, folder: str | Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> OnnxPipeline:
        """Load a folder written by `mtu export --format onnx`.

        Args:
            threads: onnxruntime intra-op threads (default: its own choice, all cores).
            providers: onnxruntime execution providers (default CPU), e.g. ["CUDAExecutionProvider"].
        """
        return cls._from_folder(folder, INDEX_KEY, lambda path: OnnxGraph(path / "model.onnx", threads, providers))
