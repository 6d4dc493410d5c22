"""Side-by-side timing: variants alternate within each repetition, medians reported."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def compare(variants: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each variant, measured interleaved so drift hits all variants alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for _ in range(warmup):
            for run in variants.values():
                run()
        for _ in range(repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
