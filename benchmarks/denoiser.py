"""Sections 2 and 5: the whole denoiser (live routing vs base vs exported) and mixed-task batches."""

from __future__ import annotations

from functools import partial

import torch

import mtu
from benchmarks.configs import base_unet, unet_inputs, unet_name, upcycled
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.timing import measure

TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def run_denoiser(settings: Settings) -> Section:
    name = unet_name(settings.quick)
    latent, batch = (16, 2) if settings.quick else (32, 2)
    base = base_unet(name)
    model = upcycled(base, TASKS, num_experts=4)
    exported = model.export("t2i").eval()
    args, kwargs = unet_inputs(name, batch, latent)
    variants = {  # partials, not lambdas: deleting `variants` below frees the models they hold
        "base": partial(base, *args, **kwargs),
        "MTU live (task='t2i')": partial(model, *args, **kwargs, task="t2i"),
        "exported ('t2i')": partial(exported, *args, **kwargs),
    }
    with torch.inference_mode():
        error = relative_error(exported(*args, **kwargs).sample, model(*args, **kwargs, task="t2i").sample)
    timing = measure(variants, repeats=settings.scaled(5).repeats, warmup=settings.warmup)
    live, export = timing.ratio("MTU live (task='t2i')", "base"), timing.ratio("exported ('t2i')", "base")
    noise = max(timing.noise("exported ('t2i')", "base"), 0.01)
    table = Table(
        ["variant", "time / base", "spread (half IQR of per-repetition ratios)", "median s per call"],
        [
            [variant, timing.ratio(variant, "base"), timing.noise(variant, "base"), timing.median(variant)]
            for variant in variants
        ],
    )
    del exported, model, variants
    return Section(
        key="denoiser",
        title="Whole denoiser: MTU live routing vs base vs exported",
        method=(
            f"{'SD1.5' if name == 'sd15' else 'tiny SD-layout'} UNet (random weights), {latent}x{latent} latent, batch "
            f"{batch}, fp32, one forward per call. MTU: {len(TASKS)} tasks, N=4, routers and task embeddings moved off "
            "their initial values (as after training). Exported = `model.export('t2i')`, a stock "
            f"UNet2DConditionModel; its output equals the live model's to relative error {error:.1e}."
        ),
        tables=[table],
        targets=[
            Target(
                "MTU live / base",
                live,
                "<=",
                1.02,
                cause="per-call task resolution, router MLPs and the per-task norm / input-conv dispatch; "
                "see section 7's profile for their share",
            ),
            Target(
                "exported / base: distance from 1",
                abs(export - 1),
                "<=",
                noise,
                detail=f"exported / base = {export:.3f}; bound = the measurement's spread (at least 0.01)",
                cause="the exported model is a stock diffusers UNet of the base class and shape, so a "
                "difference can only be noise; rerun with more repetitions on a quiet machine",
            ),
        ],
    )


def mixed_inputs(name: str, model: mtu.MTUModel, batch: int, latent: int) -> tuple[tuple, dict, list[str]]:
    """A batch of 4 tasks (t2i, edit, sr, inpaint; channels 4/8/8/9), zero-padded to 9 channels, in runs."""
    tasks = ["t2i", "edit", "sr", "inpaint"]
    per_task = batch // len(tasks)
    args, kwargs = unet_inputs(name, batch, latent)
    generator = torch.Generator().manual_seed(1)
    samples = []
    for index, task in enumerate(tasks):
        noisy = args[0][index * per_task : (index + 1) * per_task]
        extra = model.task_in_channels(task) - noisy.shape[1]
        samples.append(torch.cat([noisy, torch.randn(per_task, extra, latent, latent, generator=generator)], dim=1))
    task_list = [task for task in tasks for _ in range(per_task)]
    return (mtu.concat_task_inputs(samples), *args[1:]), kwargs, task_list


def run_mixed(settings: Settings) -> Section:
    name = unet_name(settings.quick)
    latent, batch = (16, 8) if settings.quick else (32, 8)
    model = upcycled(base_unet(name), TASKS, num_experts=4)
    args, kwargs = unet_inputs(name, batch, latent)
    mixed_args, mixed_kwargs, tasks = mixed_inputs(name, model, batch, latent)
    interleaved = [tasks[(i % 4) * 2 + i // 4] for i in range(batch)]  # t2i, edit, sr, inpaint, t2i, ...
    order = [(i % 4) * 2 + i // 4 for i in range(batch)]
    interleaved_args = (mixed_args[0][order], *mixed_args[1:])
    variants = {
        "single task (t2i x 8)": lambda: model(*args, **kwargs, task="t2i"),
        "4 tasks, grouped (4 runs)": lambda: model(*mixed_args, **mixed_kwargs, task=tasks),
        "4 tasks, interleaved (8 runs)": lambda: model(*interleaved_args, **mixed_kwargs, task=interleaved),
    }
    timing = measure(variants, repeats=settings.scaled(3).repeats, warmup=settings.warmup)
    baseline = "single task (t2i x 8)"
    rows = [[variant, 1 / timing.ratio(variant, baseline), timing.median(variant)] for variant in variants]
    grouped, interleaved_throughput = rows[1][1], rows[2][1]
    return Section(
        key="mixed",
        title="Mixed-task batches",
        method=(
            f"{'SD1.5' if name == 'sd15' else 'tiny SD-layout'} UNet, {latent}x{latent} latent, batch {batch}, "
            "MTU N=4. The mixed batch holds t2i, edit, sr and inpaint (2 samples each; 4, 8, 8 and 9 input channels, "
            "zero-padded to 9 with `mtu.concat_task_inputs`). Throughput relative to a single-task batch of the "
            "same size."
        ),
        tables=[Table(["batch", "throughput / single-task", "median s per call"], rows)],
        targets=[
            Target(
                "mixed (grouped by task) throughput / single-task",
                grouped,
                ">=",
                0.95,
                cause="each run of same-task samples runs its own norm / input conv and, where cheaper, its own "
                "output GEMM",
            ),
            Target(
                "mixed (interleaved: one run per sample) throughput / single-task",
                interleaved_throughput,
                ">=",
                0.95,
                cause="an interleaved batch has one run per sample: more, smaller norm and conv calls; sorting "
                "the batch by task (grouped row) avoids it",
            ),
        ],
    )
