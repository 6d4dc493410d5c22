"""The deploy-quality table (`python -m benchmarks --sections deploy-quality --model DIR`) on a tiny MTU model.

`test_benchmarks_quick` runs both deploy sections without a model (no quality table); figures are not checked.

The table is made in a child process: with openvino installed it has OpenVINO rows, and with OpenVINO's runtime
loaded a SIGTERM that the process sends itself segfaults it (tests/deploy/test_openvino.py), which later tests of
the suite do.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
OPENVINO = all(importlib.util.find_spec(module) is not None for module in ("openvino", "nncf"))
CHILD = """
import json, sys
from pathlib import Path

import mtu.deploy.quantize as quantize
from benchmarks.deploy import quality, run_quality
from benchmarks.settings import Settings
from tests.helpers import upcycle_tiny_sd_pipeline

quantize.CALIBRATION_EXAMPLES, quantize.CALIBRATION_STEPS = 1, 2
settings = Settings(quick=True, repeats=1)
table, targets = quality(str(upcycle_tiny_sd_pipeline(Path(sys.argv[1]))), settings)
print(json.dumps({
    "columns": table.columns,
    "names": [row[0] for row in table.rows],
    "targets": [[target.name, target.figure, target.verdict] for target in targets],
    "notes": run_quality(settings).notes,
}))
"""


@pytest.mark.slow  # six exports and 49 Shapes evaluations of a tiny model: ~60-90 s on 2 busy cores
def test_quality_table_compares_pytorch_onnx_openvino_and_int8_on_every_task(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-c", CHILD, str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])

    assert answer["names"] == ["t2i", "edit", "sr", "sr (image only)", "remove", "inpaint", "inpaint (image only)"]
    runners = ["PyTorch", "ONNX fp32", "ONNX int8", "ONNX int8-static"]
    runners += ["OpenVINO fp32", "OpenVINO int8", "OpenVINO int8-static"] if OPENVINO else []
    assert answer["columns"] == ["task", *(f"PSNR {r}" for r in runners), *(f"all-correct % {r}" for r in runners)]
    compared = [
        ("ONNX fp32", "PyTorch"),
        ("ONNX int8", "ONNX fp32"),
        ("ONNX int8-static", "ONNX fp32"),
        *([("OpenVINO fp32", "PyTorch"), ("OpenVINO int8", "PyTorch"), ("OpenVINO int8-static", "PyTorch")] * OPENVINO),
    ]
    names = [name.split(",")[0] for name, _, _ in answer["targets"]]
    assert names == [f"quality: {variant} vs {baseline}" for variant, baseline in compared for _ in range(2)]
    assert all(math.isfinite(figure) and verdict in ("met", "not met") for _, figure, verdict in answer["targets"])
    assert answer["targets"][0][1] < 1e-3  # the float32 graphs make the PyTorch pipeline's images
    if OPENVINO:
        assert answer["targets"][6][1] < 1e-3  # OpenVINO float32 (f32 precision hint) too
        assert any("OpenVINO int8 (NNCF" in note for note in answer["notes"])
