"""`OpenVINOPipeline`: every task of an OpenVINO export (`mtu export --format openvino`) run with OpenVINO.

The same pipeline as `OnnxPipeline` (`ExportedPipeline`: MTUPipeline's own request checks, conditioning,
guidance, scheduler and decoding), with each network an OpenVINO compiled model behind the `Graph` interface.

Precision: OpenVINO's CPU plugin computes in the CPU's fastest float type unless told otherwise, which on a
CPU with bfloat16 (this AMD EPYC, Intel's AMX / AVX512-BF16) is bfloat16 (a max difference of 2.5e-2 on a
shapes-mtu denoiser call, against 3.5e-6 in f32). So every graph is compiled with
`INFERENCE_PRECISION_HINT` set: "f32" by default (the images of the PyTorch pipeline), "bf16" only when
asked for. int8 folders too: their weights are 8-bit, the rest computes in that precision.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtu.deploy.onnx_pipeline import OPENVINO_KEY, ExportedPipeline, as_feeds

XML = "openvino_model.xml"  # each network's IR (weights beside it in openvino_model.bin), as optimum-intel names it
PRECISIONS = {
    "f32": "float32: the PyTorch pipeline's images (default)",
    "bf16": "bfloat16: faster where the CPU has it",
}


def require_openvino(module: str = "openvino") -> Any:
    """Import openvino (or nncf), or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"{module} is not installed: pip install 'mtu-diffusion[openvino]' (openvino and nncf)"
        ) from None


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown OpenVINO precision {precision!r}; valid options: {sorted(PRECISIONS)}")
    return precision


class OpenVINOGraph:
    """One OpenVINO compiled model called with torch tensors (by input name), returning torch tensors."""

    def __init__(self, path: Path, threads: int | None = None, precision: str = "f32", device: str = "CPU") -> None:
        openvino = require_openvino()
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the OpenVINO folder is incomplete (re-run mtu export --format openvino)"
            )
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": check_precision(precision)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.model = openvino.Core().compile_model(str(path), device, config)
        self.input_names = [port.get_any_name() for port in self.model.inputs]
        self.request = self.model.create_infer_request()

    def __call__(self, **inputs: torch.Tensor) -> list[torch.Tensor]:
        device = next(iter(inputs.values())).device
        results = self.request.infer(as_feeds(inputs))
        # copies: the request reuses its output buffers at the next call
        return [torch.from_numpy(np.array(results[port])).to(device) for port in self.model.outputs]


class OpenVINOPipeline(ExportedPipeline):
    """`MTUPipeline` over an OpenVINO folder: `OpenVINOPipeline.from_openvino(folder)("t2i", "a red circle")`."""

    @classmethod
    def from_openvino(
        cls, folder: str | Path, threads: int | None = None, precision: str = "f32", device: str = "CPU"
    ) -> OpenVINOPipeline:
        """Load a folder written by `mtu export --format openvino`.

        Args:
            threads: OpenVINO inference threads per network (default: its own choice, all cores).
            precision: "f32" (default: PyTorch's images) or "bf16" (`PRECISIONS`), OpenVINO's
                `INFERENCE_PRECISION_HINT`, for float32 and int8 folders alike.
            device: an OpenVINO device name ("CPU", "GPU", "NPU", "AUTO"); tested on the CPU only.
        """
        check_precision(precision)
        return cls._from_folder(
            folder, OPENVINO_KEY, lambda path: OpenVINOGraph(path / XML, threads, precision, device)
        )
