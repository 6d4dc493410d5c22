"""Torch threads on a busy CPU: the cores free at start, unless --threads or OMP_NUM_THREADS say otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mtu.cli.main import main
from mtu.utils import threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_free_cores_leave_out_the_busy_ones(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.free_cores(None) == 4  # unknown load: every usable core
    assert threads.free_cores(0.3) == 4
    assert threads.free_cores(1.2) == 3
    assert threads.free_cores(7.0) == 1  # never zero


def test_busy_cores_sees_a_competing_process():
    idle = threads.busy_cores(0.3)
    assert idle is not None and 0 <= idle <= (torch.multiprocessing.cpu_count() or 1)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = threads.busy_cores(0.5)
    finally:
        spinner.kill()
    assert busy >= 0.7  # the spinner holds most of a core over the sample


def test_explicit_and_environment_settings_win(monkeypatch):
    assert threads.configure_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    monkeypatch.setattr(threads, "free_cores", lambda busy: 2)
    assert threads.configure_threads(None) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(3)
    assert threads.configure_threads(None) is None and torch.get_num_threads() == 3  # left to OMP_NUM_THREADS
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        threads.configure_threads(0)


def test_the_command_line_sets_threads_before_the_command(tmp_path):
    assert main(["--threads", "1", "info", "shapes-base"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["--threads", "0", "info", "shapes-base"]) == 1  # one line, no traceback
