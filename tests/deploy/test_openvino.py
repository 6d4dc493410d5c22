"""OpenVINO exports, tested in a child process: tests/deploy/openvino_cases.py.

Why a child process: with OpenVINO's runtime loaded, a SIGTERM that the process sends itself segfaults it
(measured: `openvino_cases.py -k float32_ir` then `tests/pretrain/test_pretrain.py -k sigterm` in one pytest
process exits 139), and later tests do exactly that to check signal handling. A child keeps the runtime's
threads and signal handlers out of the rest of the suite.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("openvino_cases.py")


@pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="openvino / nncf not installed (pip install -e '.[openvino]')",
)
def test_openvino_cases_pass_in_a_child_process():
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
