"""mtu.utils.runtime.tune_allocator: glibc keeps freed memory (no page faults for reused blocks), outputs unchanged,
inherited by the processes it starts, left alone where the environment or platform says so; the command
line applies it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtu.utils import runtime

REPOSITORY = Path(__file__).resolve().parents[2]
ALLOCATOR_VARIABLES = (*runtime.USER_SETTINGS, "GLIBC_TUNABLES", runtime.OPT_OUT)
GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

# Page faults of writing a freshly malloc'd 64 MiB block and freeing it (over glibc's largest dynamic mmap
# threshold, 32 MiB, so by default it is mapped and unmapped each time), then a tiny UNet's output.
PROBE = """
import ctypes, json, os, resource, sys, torch
from mtu.utils.runtime import tune_allocator
tuned = tune_allocator()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
counts = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
from tests.core.tiny_models import tiny_sd_unet
generator = torch.Generator().manual_seed(0)
args = torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([10, 500]), torch.randn(2, 5, 16, generator=generator)
with torch.no_grad():
    torch.save(tiny_sd_unet()(*args).sample, sys.argv[1])
print(json.dumps({"tuned": tuned, "faults": counts[1:], "mmap_max": os.environ.get("MALLOC_MMAP_MAX_")}))
"""


def run_python(code: str, *arguments: str, **env: str) -> str:
    """A fresh interpreter's stdout; the environment has no allocator settings but `env`."""
    clean = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}
    process = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=clean | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)} | env,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return process.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_freed_memory_is_reused_and_outputs_are_unchanged(tmp_path):
    tuned = json.loads(run_python(PROBE, str(tmp_path / "tuned.pt")))
    default = json.loads(run_python(PROBE, str(tmp_path / "default.pt"), MTU_NO_MALLOC_TUNING="1"))
    assert tuned["tuned"] and not default["tuned"]
    assert tuned["mmap_max"] == "0" and default["mmap_max"] is None  # exported for the processes it starts
    assert min(default["faults"]) > 1000  # 64 MiB faulted in again on every allocation
    assert max(tuned["faults"]) < 100
    assert torch.allclose(torch.load(tmp_path / "tuned.pt"), torch.load(tmp_path / "default.pt"), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_a_started_process_inherits_the_setting(tmp_path):
    inherited = {name: str(value) for _, value, name in runtime.SETTINGS}
    child = json.loads(run_python(PROBE, str(tmp_path / "child.pt"), **inherited))
    assert child["tuned"] and max(child["faults"]) < 100
    user = json.loads(run_python(PROBE, str(tmp_path / "user.pt"), MALLOC_MMAP_MAX_="65536"))
    assert not user["tuned"] and min(user["faults"]) > 1000  # the user's own policy is kept


@pytest.mark.parametrize(
    "variable, value",
    [
        ("MTU_NO_MALLOC_TUNING", "1"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"),
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ],
)
def test_left_alone_when_the_environment_chose(monkeypatch, variable, value):
    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    assert runtime.tune_allocator() is False


def test_left_alone_off_glibc(monkeypatch):
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.tune_allocator() is False
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setattr(runtime.os, "confstr", lambda name: (_ for _ in ()).throw(ValueError(name)))  # musl
    assert runtime.tune_allocator() is False


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_the_command_line_tunes_unless_opted_out():
    code = "import os; from mtu.cli.main import main; main(['info', 'shapes-base']); "
    code += "print(os.environ.get('MALLOC_MMAP_MAX_'))"
    assert run_python(code) == "0"
    assert run_python(code, MTU_NO_MALLOC_TUNING="1") == "None"


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_training_commands_keep_the_default_allocator():
    """Measured: a training step is no faster with it (BENCHMARKS.md "PyTorch on CPU"); its peaks would stay."""
    code = "import os; from mtu.cli.main import main; main(['train', 'no-such-config.yaml']); "
    code += "print(os.environ.get('MALLOC_MMAP_MAX_'))"
    assert run_python(code) == "None"
