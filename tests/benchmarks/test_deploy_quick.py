"""The deploy-quality table (`python -m benchmarks --sections deploy-quality --model DIR`) on a tiny MTU model.

`test_benchmarks_quick` runs both deploy sections without a model (no quality table); figures are not checked.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.deploy import quality
from benchmarks.settings import Settings
from tests.helpers import upcycle_tiny_sd_pipeline

pytest.importorskip("onnxruntime")


@pytest.mark.slow  # three exports and 28 Shapes evaluations of a tiny model: ~30-45 s on 2 busy cores
def test_quality_table_compares_pytorch_onnx_and_int8_on_every_task(tmp_path, monkeypatch):
    monkeypatch.setattr("mtu.deploy.quantize.CALIBRATION_EXAMPLES", 1)
    monkeypatch.setattr("mtu.deploy.quantize.CALIBRATION_STEPS", 2)
    table, targets = quality(str(upcycle_tiny_sd_pipeline(tmp_path)), Settings(quick=True, repeats=1))

    names = [row[0] for row in table.rows]
    assert names == ["t2i", "edit", "sr", "sr (image only)", "remove", "inpaint", "inpaint (image only)"]
    assert table.columns[1:5] == ["PSNR PyTorch", "PSNR ONNX fp32", "PSNR ONNX int8", "PSNR ONNX int8-static"]
    assert [target.name.split(",")[0] for target in targets] == [
        "quality: ONNX fp32 vs PyTorch",
        "quality: ONNX fp32 vs PyTorch",
        "quality: ONNX int8 vs ONNX fp32",
        "quality: ONNX int8 vs ONNX fp32",
        "quality: ONNX int8-static vs ONNX fp32",
        "quality: ONNX int8-static vs ONNX fp32",
    ]
    assert all(math.isfinite(target.figure) and target.verdict in ("met", "not met") for target in targets)
    assert targets[0].figure < 1e-3  # the float32 graphs make the PyTorch pipeline's images
