"""SIGTERM to `mtu export` and `mtu serve` (issue 31), sent from outside to a child process (with OpenVINO loaded a
process that signals itself segfaults: tests/deploy/test_openvino.py): one line, no traceback, nothing half-written."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import upcycle_tiny_sd_pipeline

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

# `mtu export` in a child whose export pauses once its folder is written (still under its temp name), so that the
# signal lands while the export runs, every time.
PAUSED_EXPORT = """
import sys, time
import mtu.pipelines.export as export
saved = export._save_marked
def save_then_wait(*args, **kwargs):
    saved(*args, **kwargs)
    print("written", flush=True)
    time.sleep(120)
export._save_marked = save_then_wait
from mtu.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_mtu(tmp_path_factory) -> Path:
    return upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("signals"))


class Child:
    """A child process whose stdout and stderr are read as they come (a full pipe would block it)."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self.readers = [self._read(self.process.stdout, self.out), self._read(self.process.stderr, self.err)]

    @staticmethod
    def _read(stream, into: bytearray) -> threading.Thread:
        def read() -> None:
            for chunk in iter(lambda: stream.read1(4096), b""):
                into.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        return reader

    def wait_for(self, ready, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout  # a loaded box may take a while to import torch
        while not ready() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.process.poll() is None and ready(), f"{what}: {self.err.decode(errors='replace')[-3000:]}"

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[str]]:
        self.process.send_signal(signum)
        code = self.process.wait(120)
        for reader in self.readers:
            reader.join(10)
        return code, [line.split("\r")[-1] for line in self.err.decode(errors="replace").strip().splitlines()]


def test_sigterm_during_mtu_export_is_one_line_and_leaves_nothing(tiny_mtu, tmp_path):
    out = tmp_path / "export"
    argv = ["export", "--model", str(tiny_mtu), "--task", "edit", "--out", str(out)]
    child = Child([sys.executable, "-c", PAUSED_EXPORT, *argv])
    child.wait_for(lambda: b"written" in child.out, "the export never got to writing")
    code, lines = child.stop()
    assert code == 128 + signal.SIGTERM, lines[-5:]
    assert lines[-1] == "mtu export: interrupted; nothing written", lines[-5:]
    assert not any("Traceback" in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # neither the export nor its temp folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="mtu serve needs the demo extra (gradio)")
def test_sigterm_stops_mtu_serve_cleanly_with_one_line(tiny_mtu):
    port = _free_port()
    argv = ["serve", "--model", str(tiny_mtu), "--port", str(port)]
    child = Child([sys.executable, "-m", "mtu.cli.main", *argv])
    child.wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), "the server never answered")
    code, lines = child.stop()
    assert code == 0, lines[-5:]
    assert lines[-1] == "mtu serve: stopped", lines[-5:]
    assert not any("Traceback" in line or "Keyboard interruption" in line for line in lines), lines
    assert not _answers(f"http://127.0.0.1:{port}/")
