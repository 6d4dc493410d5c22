"""Feedback while training: a progress bar with per-task losses, logs every few steps, sample grids."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import nullcontext

import numpy as np
from tqdm.auto import tqdm

from mtu.baseline_models import activate
from mtu.evaluation.router_health import router_health
from mtu.layers import MTUFeedForward
from mtu.training.run import Run

LOG_FILE = "train_log.jsonl"
logger = logging.getLogger(__name__)


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
        self.has_routers = any(isinstance(m, MTUFeedForward) for m in run.unwrapped.modules())
        self.warned: set[tuple[str, str]] = set()  # (layer, state): each collapse is reported once

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
        values.update(self._router_health(step))
        self.run.accelerator.log(values, step=step)
        if self.run.accelerator.is_main_process:
            with open(self.run.output_dir / LOG_FILE, "a") as handle:
                handle.write(json.dumps({"step": step, **values}) + "\n")

    def _router_health(self, step: int) -> dict[str, float]:
        """Router health at this step (logged as router/*), warning once per layer that dies or saturates."""
        if not self.has_routers:
            return {}
        health = router_health(self.run.unwrapped)
        for layer in health.layers:
            if layer.state in ("dead", "saturated") and (layer.name, layer.state) not in self.warned:
                self.warned.add((layer.name, layer.state))
                what = (
                    "its hidden units are off for every task"
                    if layer.dead
                    else "one expert gets >= 0.99 for every task"
                )
                logger.warning(
                    "step %d: the router of %s is %s (%s): that layer no longer routes by task. Lower the router "
                    "learning rate (train.lr_multipliers), or try mtu.router_bias: false, mtu.gate_dropout or "
                    "train.router_z_loss (docs/training.md, router health)",
                    step, layer.name, layer.state, what,
                )  # fmt: skip
        summary = health.summary()
        return {f"router/{key}": float(summary[key]) for key in ("task_dependent", "dead", "saturated", "mean_js_bits")}

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
            if run.config.training_method.adapters:
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
