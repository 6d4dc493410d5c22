"""How many torch threads to run on a CPU that other processes may be using.

Torch starts one thread per core. When another CPU-bound process holds a core, those threads wait on
each other at every parallel region, and a step gets up to 10x slower (measured on 2 cores: 40
training steps, 19.8 s alone, 197 s beside one busy process; 35.8 s with one thread). So the command
line starts with as many threads as there are cores *free now*: the cores this process may use minus
the cores busy over a short sample of /proc/stat. `--threads N` (or OMP_NUM_THREADS) overrides it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.25


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs together, or None where /proc/stat is not there (macOS, Windows)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already counted in user


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores' worth of CPU time other processes used over the last `seconds` (None: unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(seconds)
    second = _cpu_times()
    idle, total = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return None
    return (1 - idle / total) * (os.cpu_count() or 1)


def free_cores(busy: float | None) -> int:
    """Cores this process may use (its affinity) minus those busy, at least 1."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return usable if busy is None else max(1, min(usable, round(usable - busy)))


def configure_threads(requested: int | None) -> int | None:
    """Set torch's intra-op threads: `requested`, else OMP_NUM_THREADS (torch reads it), else the free
    cores. Returns the count set by this call (None when left to OMP_NUM_THREADS)."""
    if requested is not None and requested < 1:
        raise ValueError(f"--threads must be >= 1, got {requested}")
    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    threads = requested or free_cores(busy_cores())
    torch.set_num_threads(threads)
    return threads
