"""The loss on a batch and one optimizer step: mixed-task diffusion loss, accumulation, a finite-loss guard.

A step sums per-task losses and counts over its micro-batches and reduces them across processes in one
all-reduce; a non-finite loss raises `NonFiniteLoss` before the update is applied.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import torch
from diffusers.training_utils import compute_snr

from mtu.baseline_models import activate
from mtu.conditioning import denoiser_input
from mtu.layers.router import task_runs
from mtu.model import concat_task_inputs
from mtu.training.cache import encode_batch
from mtu.training.run import Run

logger = logging.getLogger(__name__)


def train_batch(run: Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample diffusion losses (B,) and task ids (B,) of one micro-batch (cached or not: `mtu.training.cache`)."""
    components, device = run.components, run.accelerator.device
    specs = run.config.task_specs()
    encoded = batch["encoded"] if "encoded" in batch else encode_batch(components, batch, specs)
    encoded = {key: value.to(device) for key, value in encoded.items()}
    noisy, target, timesteps = noised(run, encoded, batch["noise_seeds"])
    task_ids = batch["task_ids"]
    inputs = [
        denoiser_input(specs[task], noisy[rows], encoded["condition"][rows, : components.extra_channels(specs[task])])
        for task, rows in task_runs(task_ids.tolist())
    ]
    added = components.added_cond_kwargs(encoded.get("pooled"))
    kwargs = {"added_cond_kwargs": added} if added is not None else {}
    # By name: the batch's ids index the config's tasks, which an add-task model serves after its own.
    names = [run.task_names[task] for task in task_ids.tolist()]
    prediction = run.model(concat_task_inputs(inputs), timesteps, encoded["text"], task=names, **kwargs).sample
    losses = ((prediction.float() - target.float()) ** 2).mean(dim=(1, 2, 3))
    return losses * snr_weights(run, timesteps), task_ids


def snr_weights(run: Run, timesteps: torch.Tensor) -> torch.Tensor | float:
    """Min-SNR-gamma loss weights (Hang et al., ICCV 2023) per sample, or 1 when `train.snr_gamma` is off.

    Low-noise timesteps have a huge SNR and dominate an unweighted loss although their targets are nearly
    solved; min(SNR, gamma) / SNR caps their weight (/(SNR + 1) for v-prediction), as diffusers'
    text-to-image script does with `--snr_gamma`.
    """
    gamma = run.config.train.snr_gamma
    if gamma is None:
        return 1.0
    snr = compute_snr(run.noise_scheduler, timesteps)
    capped = torch.clamp(snr, max=gamma)
    if run.noise_scheduler.config.prediction_type == "v_prediction":
        return capped / (snr + 1)
    return capped / snr


def router_penalty(run: Run, task_ids: torch.Tensor) -> torch.Tensor | float:
    """`train.router_z_loss` x the router z-loss of the batch's tasks (0 when off or the model has no routers)."""
    weight = run.config.train.router_z_loss
    if not weight or not hasattr(run.unwrapped, "router_z_loss"):
        return 0.0
    return weight * run.unwrapped.router_z_loss([run.task_names[task] for task in task_ids.tolist()])


def noised(run: Run, encoded: dict, seeds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, what the denoiser should predict, timesteps) of a batch, drawn from its per-sample seeds.

    Each sample draws its latent sample, noise and timestep from its own generator, so a sample's loss does
    not depend on the batch it lands in (or on the number of processes).
    """
    device = run.accelerator.device
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    shape = encoded["mean"].shape[1:]

    def normal() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    latents = run.components.target_latents(encoded["mean"], encoded["std"], normal())
    noise = normal()
    steps = run.noise_scheduler.config.num_train_timesteps
    timesteps = torch.cat([torch.randint(0, steps, (1,), generator=g) for g in generators]).to(device)
    noisy = run.noise_scheduler.add_noise(latents, noise, timesteps)
    prediction_type = run.noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noisy, noise, timesteps
    if prediction_type == "v_prediction":
        return noisy, run.noise_scheduler.get_velocity(latents, noise, timesteps), timesteps
    raise ValueError(f"prediction_type {prediction_type!r} is not supported; valid: ['epsilon', 'v_prediction']")


def optimizer_step(run: Run, micro: list[dict]) -> dict:
    """Forward / backward over the micro-batches of one optimizer step, then (if the loss is finite) update."""
    accelerator, tasks = run.accelerator, run.task_names
    sums = torch.zeros(2 * len(tasks) + 2, dtype=torch.float64)  # per-task loss sums, per-task counts, skips, stop
    for index, batch in enumerate(micro):
        if run.config.training_method.adapters:
            activate(run.unwrapped, tasks[int(batch["task_ids"][0])])
        last = index == len(micro) - 1
        with nullcontext() if last else accelerator.no_sync(run.model):
            losses, task_ids = train_batch(run, batch)
            accelerator.backward((losses.mean() + router_penalty(run, task_ids)) / len(micro))
        sums[: len(tasks)].index_add_(0, task_ids, losses.detach().double().cpu())
        sums[len(tasks) : 2 * len(tasks)].index_add_(0, task_ids, torch.ones(len(task_ids), dtype=torch.float64))
        sums[-2] += len(batch["skipped"])
        for message in batch["skipped"]:
            logger.warning("skipped an unreadable sample (%s)", message)
    return _finish_step(run, sums)


def _finish_step(run: Run, sums: torch.Tensor) -> dict:
    accelerator, tasks = run.accelerator, run.task_names
    sums[-1] = float(run.stop.requested)
    if accelerator.num_processes > 1:  # one all-reduce carries losses, counts, skips and stop requests
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    loss_sums, counts = sums[: len(tasks)], sums[len(tasks) : 2 * len(tasks)]
    loss = float(loss_sums.sum() / counts.sum())
    if not math.isfinite(loss):
        raise NonFiniteLoss(loss, {t: float(s / c) for t, s, c in zip(tasks, loss_sums, counts) if c})
    if run.config.train.max_grad_norm is not None:
        accelerator.clip_grad_norm_(run.model.parameters(), run.config.train.max_grad_norm)
    run.optimizer.step()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update()
    run.progress.step += 1
    run.progress.skipped += int(sums[-2])
    per_task = {t: float(s / c) for t, s, c in zip(tasks, loss_sums, counts) if c}
    return {"loss": loss, "tasks": per_task, "stop": bool(sums[-1] > 0)}


class NonFiniteLoss(RuntimeError):
    def __init__(self, loss: float, per_task: dict[str, float]) -> None:
        super().__init__(f"loss is {loss} ({', '.join(f'{t} {v:.4g}' for t, v in per_task.items())})")
        self.loss, self.per_task = loss, per_task
