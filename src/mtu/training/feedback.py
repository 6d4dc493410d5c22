"""Feedback while training: a progress bar with per-task losses, logs every few steps, sample grids."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext

import numpy as np
from tqdm.auto import tqdm

from mtu.baselines import ADAPTER_METHODS, activate
from mtu.training.run import Run

LOG_FILE = "train_log.jsonl"


class Feedback:
    """Progress bar with per-task losses, JSONL + tracker logs every `logging.every` steps."""

    def __init__(self, run: Run) -> None:
        self.run, self.every = run, run.config.logging.every
        self.window: dict[str, list[float]] = {}
        self.started, self.start_step = time.perf_counter(), run.progress.step
        main = run.accelerator.is_main_process
        self.bar = tqdm(
            total=run.config.train.max_steps,
            initial=run.progress.step,
            desc="train",
            disable=not main,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.smoothed: dict[str, float] = {}  # per-task loss, exponentially smoothed, for the bar

    def record(self, result: dict) -> None:
        step = self.run.progress.step
        for task, value in {"loss": result["loss"], **result["tasks"]}.items():
            self.window.setdefault(task, []).append(value)
            previous = self.smoothed.get(task, value)
            self.smoothed[task] = 0.9 * previous + 0.1 * value
        self.bar.update(1)
        self.bar.set_postfix({t: f"{v:.4f}" for t, v in self.smoothed.items()}, refresh=False)
        if step % self.every == 0 or step == self.run.config.train.max_steps:
            self._log(step)

    def _log(self, step: int) -> None:
        elapsed = time.perf_counter() - self.started
        values = {("loss" if t == "loss" else f"loss/{t}"): float(np.mean(v)) for t, v in self.window.items()}
        values.update(
            lr=self.run.lr_scheduler.get_last_lr()[0],
            skipped_samples=self.run.progress.skipped,
            seconds_per_step=elapsed / max(step - self.start_step, 1),
        )
        self.window.clear()
        self.run.accelerator.log(values, step=step)
        if self.run.accelerator.is_main_process:
            with open(self.run.output_dir / LOG_FILE, "a") as handle:
                handle.write(json.dumps({"step": step, **values}) + "\n")

    def close(self) -> None:
        self.bar.close()


def write_samples(run: Run, previews: dict) -> None:
    """Per-task PNG grids under samples/step-N/ (and to the tracker), main process only."""
    from mtu.training.sampling import grid, pipeline_for, save_grid, task_samples

    if not run.accelerator.is_main_process or not previews:
        return
    model, step, section = run.unwrapped, run.progress.step, run.config.logging
    pipeline = pipeline_for(model, run.components)
    sampler = {"guidance_scale": section.guidance_scale, "image_guidance_scale": section.image_guidance_scale}
    images = {}
    model.eval()
    with run.ema.swapped() if run.ema else nullcontext(), run.accelerator.autocast():
        for name, pairs in previews.items():
            if not pairs:  # every preview draw was unreadable
                continue
            if run.config.method in ADAPTER_METHODS:
                activate(model, name)
            outputs = task_samples(pipeline, pairs, run.config.data.resolution, section.sample_steps, **sampler)
            images[name] = grid(pairs, outputs)
            save_grid(images[name], run.output_dir / "samples" / f"step-{step:08d}" / f"{name}.png")
    model.train()
    if section.log_with == "tensorboard":
        tracker = run.accelerator.get_tracker("tensorboard")
        tracker.log_images({f"samples/{k}": v for k, v in images.items()}, step=step, dataformats="HWC")


def preview_pairs(sources: dict, count: int) -> dict:
    """Fixed examples per task for sample grids: the held-out Shapes set, or fixed draws from a dataset."""
    from mtu.data.shapes.tasks import evaluation_rng
    from mtu.training.pairs import UnreadableSample
    from mtu.training.sources import ShapesSource

    previews = {}
    for index, (name, source) in enumerate(sources.items()):
        if isinstance(source, ShapesSource):
            previews[name] = [source.draw(evaluation_rng(name, 0, i), training=False) for i in range(count)]
            continue
        rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(0x5A3F, index)))
        pairs = []
        for _ in range(count * 10):
            if len(pairs) == count:
                break
            try:
                pairs.append(source.draw(rng))
            except UnreadableSample:
                continue
        previews[name] = pairs
    return previews
