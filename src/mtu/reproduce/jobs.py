"""Running the reproduction's jobs: calls in spawned processes, in dependency order, and a run stopped by a signal.

The runner (`mtu.reproduce.runner`), the pilots (`pilot`, `router_pilot`) and the levers share these.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch
from tqdm.auto import tqdm


class RunInterrupted(RuntimeError):
    """A run's training was stopped by a signal; it checkpointed, and the next `reproduce` resumes it."""


def parallel(calls: list[tuple], jobs: int, desc: str, after: dict[int, set[int]] | None = None) -> list:
    """Results of `function(*arguments)` for each (function, arguments) of `calls`, in order, run in `jobs`
    fresh processes (spawned: CUDA cannot be forked) with the CPU's cores shared out as torch threads.

    At most `jobs` calls are handed out at a time, so after Ctrl-C (which stops the running ones at a
    checkpoint) no queued call starts. `after[i]`: calls (earlier in `calls`) that must finish before
    call i starts; the first ready call starts first.
    """
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending, running, results = list(range(len(calls))), {}, {}
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        with tqdm(total=len(calls), desc=desc, unit="run") as bar:
            while pending or running:
                while len(running) < jobs and (index := next_ready(pending, results, after or {})) is not None:
                    pending.remove(index)
                    function, arguments = calls[index]
                    running[pool.submit(function, *arguments)] = index
                if not running:  # only when a call waits for one that comes after it: a bug in `after`
                    raise RuntimeError(f"calls {pending} wait for calls that never start: {after}")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
                    bar.update(1)
    return [results[index] for index in range(len(calls))]


def next_ready(pending: list[int], finished, after: dict[int, set[int]]) -> int | None:
    """The first pending call whose prerequisites have all finished (None: every one waits for a running call)."""
    return next((index for index in pending if after.get(index, set()) <= set(finished)), None)
