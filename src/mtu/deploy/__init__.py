"""Deployment formats of an MTU model: ONNX and OpenVINO (one task, or every task in one graph; float32 or int8)
and single-file checkpoints.

Imports are lazy: `import mtu.deploy` loads neither onnx, onnxruntime nor openvino (optional extras: `pip install
'mtu-diffusion[onnx]'`, `'mtu-diffusion[openvino]'`) until one of these names is used.
"""

from __future__ import annotations

from mtu.utils.lazy import lazy_exports

_EXPORTS = {
    "AllTaskDenoiser": "mtu.deploy.gather",
    "build_all_task_denoiser": "mtu.deploy.gather",
    "export_onnx": "mtu.deploy.onnx_export",
    "export_openvino": "mtu.deploy.openvino_export",
    "OnnxPipeline": "mtu.deploy.onnx_pipeline",
    "OnnxDenoiser": "mtu.deploy.onnx_pipeline",
    "OnnxTextEncoder": "mtu.deploy.onnx_pipeline",
    "OnnxVae": "mtu.deploy.onnx_pipeline",
    "OpenVINOGraph": "mtu.deploy.openvino_pipeline",
    "OpenVINOPipeline": "mtu.deploy.openvino_pipeline",
    "export_single_file": "mtu.deploy.single_file",
    "quantize_denoiser": "mtu.deploy.quantize",
    "quantize_folder": "mtu.deploy.quantize",
    "to_original_layout": "mtu.deploy.single_file",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
