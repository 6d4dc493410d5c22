"""The benchmark workers' own measurements."""

from __future__ import annotations

import resource
import subprocess
import sys

from benchmarks.workers import REPOSITORY, max_rss_bytes


def test_a_worker_reports_its_own_peak_memory_not_its_parents():
    """ru_maxrss survives fork + exec, so a worker of a process that held a big model once reported that
    process's peak (the openvino section's shapes-base rows: 17,877 MiB each); VmHWM does not."""
    held = bytearray(300 * 2**20)  # this process's peak: at least 300 MiB more than a bare interpreter's
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
    code = "import resource; from benchmarks.workers import max_rss_bytes; "
    code += "print(max_rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPOSITORY)
    own, inherited = map(int, out.stdout.split())
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert inherited >= parent - 2**20  # the trap: the parent's peak, reported by the child
    assert own < 200 * 2**20 < parent  # the worker's own: a bare interpreter
    assert max_rss_bytes() >= len(held)
    del held
