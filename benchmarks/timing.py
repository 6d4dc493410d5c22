"""Side-by-side timing: variants alternate within each repetition, medians reported.

Absolute times on a shared CPU are noise; a ratio of two variants timed in the same repetition is
not (drift hits both alike), so ratios are medians of per-repetition ratios.
"""

from __future__ import annotations

import contextlib
import gc
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """Seconds per call of each variant, one sample per repetition (repetitions aligned across variants)."""

    samples: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def paired_ratios(self, name: str, baseline: str) -> list[float]:
        return [a / b for a, b in zip(self.samples[name], self.samples[baseline])]

    def ratio(self, name: str, baseline: str) -> float:
        """Median over repetitions of time(name) / time(baseline) measured in the same repetition."""
        return statistics.median(self.paired_ratios(name, baseline))

    def noise(self, name: str, baseline: str) -> float:
        """Half the interquartile range of the paired ratios: how far a ratio moves between repetitions."""
        ratios = self.paired_ratios(name, baseline)
        if len(ratios) < 4:
            return (max(ratios) - min(ratios)) / 2
        quartiles = statistics.quantiles(ratios, n=4)
        return (quartiles[2] - quartiles[0]) / 2


def measure(
    variants: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 2,
    inference: bool = True,
    number: int = 1,
) -> Timing:
    """Time every variant `repeats` times after `warmup` untimed rounds, interleaved.

    Each sample is the mean of `number` back-to-back calls (use > 1 for microsecond-scale calls).

    The variants run in a fresh random order each repetition (seeded, so runs are repeatable), so none
    always runs right after the same one: the state a variant leaves behind (caches, the allocator's
    heap) falls on a different neighbour each time. The garbage collector is paused while timing.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    mode = torch.inference_mode() if inference else contextlib.nullcontext()
    gc.collect()
    gc.disable()
    try:
        with mode:
            for _ in range(warmup):
                for name in names:
                    variants[name]()
            shuffler = random.Random(0)
            for _repetition in range(repeats):
                for name in shuffler.sample(names, len(names)):
                    run = variants[name]
                    start = time.perf_counter()
                    for _ in range(number):
                        run()
                    samples[name].append((time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return Timing(samples)


def compare(variants: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each variant, measured interleaved so drift hits all variants alike."""
    timing = measure(variants, repeats=repeats, warmup=warmup)
    return {name: timing.median(name) for name in variants}
