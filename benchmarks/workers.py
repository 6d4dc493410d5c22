"""Measurements that need a process of their own (memory peaks, allocator settings), run as `python -m` workers.

A worker prints one JSON line last on stdout; `run_worker` returns it parsed. A `Worker` stays alive and
answers commands (one line on its stdin each) with `reply` lines.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

# glibc keeps freed memory for reuse instead of returning it to the kernel (large blocks are otherwise
# mmap'd per allocation and unmapped on free, so every forward page-faults its activations in again).
GLIBC_KEEP_FREED_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def run_worker(module: str, arguments: list[str], env: dict[str, str] | None = None, unset: tuple = ()) -> dict:
    """`env` is added to this process's environment, `unset` names taken out of it."""
    command = [sys.executable, "-m", module, *arguments]
    environment = {key: value for key, value in os.environ.items() if key not in unset} | (env or {})
    process = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPOSITORY, env=environment)
    if process.returncode != 0:
        raise RuntimeError(f"worker `{' '.join(command[2:])}` failed ({process.returncode}):\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def max_rss_bytes() -> int:
    """This process's peak resident memory, for a worker to report.

    `getrusage`'s ru_maxrss is not used: it is kept across fork + exec, so a worker started by a benchmark
    process that once held a full UNet reports that process's peak (it did: every shapes-base row of the
    openvino section's first run read 17,877 MiB); /proc's VmHWM belongs to this process's own address space.
    """
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


REPLY = "@@ "  # a persistent worker's answers start with this; anything else on its stdout is library chatter


def reply(message: dict) -> None:
    """Answer the parent's `Worker.call` (or its first `Worker.answer`) from a worker process."""
    print(REPLY + json.dumps(message), flush=True)


class Worker:
    """A `python -m module` process that stays alive: `call` sends one command line and waits for its reply."""

    def __init__(self, module: str, arguments: list[str], env: dict[str, str]):
        self.log = tempfile.TemporaryFile(mode="w+")  # stderr to a file, not a pipe: a chatty worker never blocks
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=REPOSITORY,
            env=env,
        )

    def answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        self.log.seek(0)
        raise RuntimeError(f"worker {self.process.args[2:]} ended ({self.process.wait()}):\n{self.log.read()[-3000:]}")

    def call(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait()
        self.log.close()
