"""Measurements that need a process of their own (memory peaks, allocator settings), run as `python -m` workers.

A worker prints one JSON line last on stdout; `run_worker` returns it parsed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

# glibc keeps freed memory for reuse instead of returning it to the kernel (large blocks are otherwise
# mmap'd per allocation and unmapped on free, so every forward page-faults its activations in again).
GLIBC_KEEP_FREED_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def run_worker(module: str, arguments: list[str], env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, "-m", module, *arguments]
    process = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=REPOSITORY, env={**os.environ, **(env or {})}
    )
    if process.returncode != 0:
        raise RuntimeError(f"worker `{' '.join(command[2:])}` failed ({process.returncode}):\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])
