"""Stage-independent training machinery: learning-rate schedule, EMA, resumable state, the step loop."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mtu.pretrain.checkpoint import prefixed, save_checkpoint, unprefixed
from mtu.training.ema import update_averages
from mtu.utils.safe_state import optimizer_from_flat, optimizer_to_flat
from mtu.utils.signals import StopRequest

METRICS_FILE = "metrics.jsonl"
_LOG_EVERY = 50


def lr_at(step: int, total: int, peak: float, warmup: int, final_fraction: float) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to `final_fraction * peak` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Stage:
    """Everything a stage needs to continue bit-for-bit after a restart."""

    name: str
    modules: dict[str, torch.nn.Module]  # trained modules, by checkpoint prefix
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # noise, timesteps, latent sampling (on the CPU, whatever the device)
    ema_decay: float | None = None  # None: no EMA copy
    step: int = 0
    seconds_per_step: float | None = None  # moving average of the wall-clock time of one step
    hardware: str | None = None  # where the latest steps ran (for the model card)
    seconds_total: float = 0.0  # wall-clock of all steps so far, across resumes (checkpoints excluded)
    ema: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ema_decay is not None and not self.ema:
            self.ema = {
                name: {k: p.detach().clone() for k, p in module.named_parameters()}
                for name, module in self.modules.items()
            }

    def update_ema(self) -> None:
        if self.ema_decay is None:
            return
        for name, module in self.modules.items():
            named = list(module.named_parameters())
            update_averages([self.ema[name][key] for key, _ in named], [p for _, p in named], self.ema_decay, self.step)

    def record_time(self, seconds: float) -> None:
        self.seconds_total += seconds
        previous = self.seconds_per_step
        self.seconds_per_step = seconds if previous is None else 0.98 * previous + 0.02 * seconds

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {"rng.torch": self.generator.get_state()}
        for name, module in self.modules.items():
            tensors |= prefixed(name, module.state_dict())
        for name, averages in self.ema.items():
            tensors |= prefixed(f"ema.{name}", averages)
        optimizer_tensors, _ = optimizer_to_flat(self.optimizer.state_dict())
        return tensors | optimizer_tensors

    def state(self) -> dict:
        _, groups = optimizer_to_flat(self.optimizer.state_dict())
        return {
            "stage": self.name,
            "step": self.step,
            "seconds_per_step": self.seconds_per_step,
            "hardware": self.hardware,
            "seconds_total": self.seconds_total,
            "optimizer_param_groups": groups,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Take the weights, EMA, optimizer, RNG and progress of a checkpoint's `tensors` and `state`."""
        for name, module in self.modules.items():
            module.load_state_dict(unprefixed(name, tensors))
        self.ema = {
            name: {key: value.to(self._device(name)) for key, value in unprefixed(f"ema.{name}", tensors).items()}
            for name in self.ema
        }
        self.optimizer.load_state_dict(optimizer_from_flat(tensors, state["optimizer_param_groups"]))
        self.generator.set_state(tensors["rng.torch"])
        self.step = state["step"]
        self.seconds_per_step = state["seconds_per_step"]
        self.hardware = state.get("hardware")
        self.seconds_total = state.get("seconds_total", 0.0)

    def _device(self, name: str) -> torch.device:
        return next(self.modules[name].parameters()).device

    @property
    def device(self) -> torch.device:
        return self._device(next(iter(self.modules)))

    def ema_module(self, name: str, module: torch.nn.Module) -> torch.nn.Module:
        """`module` with this stage's EMA weights loaded (in place); plain weights when there is no EMA."""
        if name in self.ema:
            module.load_state_dict(self.ema[name], strict=False)
        return module


@dataclass
class StepBudget:
    """How many optimizer steps, and how many seconds, this invocation may still take (None: unlimited)."""

    remaining: int | None = None
    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    def spend(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def exhausted(self) -> bool:
        out_of_steps = self.remaining is not None and self.remaining <= 0
        out_of_time = self.seconds is not None and time.monotonic() - self.started >= self.seconds
        return out_of_steps or out_of_time


def log_metrics(out: Path, record: dict) -> None:
    with open(out / METRICS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _step(
    stage: Stage,
    batches: Iterator,
    lr_of_step: Callable[[int], float],
    train_step: Callable[[object], dict[str, float]],
) -> tuple[float, dict[str, float]]:
    """One optimizer step of `stage` on the next batch, at its scheduled learning rate; (lr, metrics)."""
    start = time.perf_counter()  # data wait included: this is the wall-clock a step costs
    batch = next(batches)
    lr = lr_of_step(stage.step)
    for group in stage.optimizer.param_groups:
        group["lr"] = lr
    metrics = train_step(batch)
    stage.step += 1
    stage.update_ema()
    stage.record_time(time.perf_counter() - start)
    return lr, metrics


def _report(stage: Stage, bar: tqdm, out: Path, lr: float, metrics: dict[str, float]) -> None:
    """The progress bar after every step, `metrics.jsonl` every `_LOG_EVERY` steps."""
    bar.update(1)
    # refresh=False: let mininterval throttle the bar (a log file would get a line per step).
    postfix = {"loss": f"{metrics['loss']:.4f}", "lr": f"{lr:.2e}", "s_step": f"{stage.seconds_per_step:.2f}"}
    bar.set_postfix(postfix, refresh=False)
    if stage.step % _LOG_EVERY == 0:
        record = {"stage": stage.name, "step": stage.step, "lr": lr, **metrics}
        log_metrics(out, {**record, "seconds_per_step": stage.seconds_per_step})


def run_steps(
    stage: Stage,
    total: int,
    lr_of_step: Callable[[int], float],
    batches: Iterable,
    train_step: Callable[[object], dict[str, float]],
    out: Path,
    checkpoint_every: int,
    stop: StopRequest,
    budget: StepBudget,
    after_step: Callable[[int], None] | None = None,
) -> bool:
    """Train `stage` from its current step to `total`, checkpointing on schedule and on stop requests.

    `batches` yields the batch of each remaining step in order (see `data.step_batches`); each goes to
    `train_step`.

    Returns:
        True when the stage reached `total`; False when a signal or the step budget stopped it (a
        checkpoint of the stopping step has been written).
    """
    interactive = sys.stderr.isatty()
    bar = tqdm(total=total, initial=stage.step, desc=stage.name, mininterval=1 if interactive else 30, file=sys.stderr)
    batch_iterator = iter(batches)
    try:
        while stage.step < total:
            lr, metrics = _step(stage, batch_iterator, lr_of_step, train_step)
            _report(stage, bar, out, lr, metrics)
            budget.spend()
            stopping = stop.requested or budget.exhausted
            if stage.step % checkpoint_every == 0 or stage.step == total or stopping:
                save_checkpoint(out, stage)
            if after_step is not None:
                after_step(stage.step)
            if stopping and stage.step < total:
                print(f"\nstopped at {stage.name} step {stage.step}; continue with --resume", file=sys.stderr)
                return False
    finally:
        bar.close()
    return True
