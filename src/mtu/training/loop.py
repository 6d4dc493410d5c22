"""The training loop on accelerate: mixed-task diffusion loss, crash-safe checkpoints, feedback.

    >>> from mtu.training import load_config, train
    >>> train(load_config("configs/shapes.yaml", {"train.max_steps": 100}), resume="latest")

Shape of accelerate's `nlp_example.py` (build data, build model, loop), split into small functions.
Steps are optimizer steps. Checkpoints are written and read by `mtu.training.checkpoint` as safetensors +
JSON (not accelerate's `save_state` / `load_state`, whose pickles run code when loaded); the data stream
is a pure function of (seed, step), so resuming needs no skipped batches (see `mtu.training.data`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from mtu.conditioning import denoiser_input
from mtu.layers.routing import task_runs
from mtu.model import concat_task_inputs
from mtu.signals import StopRequest
from mtu.training.cache import encode_batch, training_sources
from mtu.training.checkpoint import (
    CONFIG_FILE,
    Progress,
    check_loadable,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    saved_config,
    step_of,
)
from mtu.training.components import Components, load_components
from mtu.training.config import TrainConfig
from mtu.training.data import Dropout, Layout, StepBatches, micro_batches
from mtu.ema import TrainableEMA
from mtu.training.methods import (
    ADAPTER_METHODS,
    AdapterSpec,
    activate,
    build_model,
    format_counts,
    mtu_config_of,
    parameter_counts,
    save_trained,
    trainable_count,
)
from mtu.training.sources import open_source

logger = logging.getLogger(__name__)
LOG_FILE = "train_log.jsonl"
MODEL_DIR = "model"
# Settings that must not change when a run is resumed: the weights would not fit or would mean something else.
FIXED_ON_RESUME = ("model", "method", "extends", "mtu", "adapter")


@dataclass
class Run:
    """Everything the step loop touches."""

    config: TrainConfig
    accelerator: object
    components: Components
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped when distributed)
    optimizer: object
    lr_scheduler: object
    noise_scheduler: object
    progress: Progress
    ema: TrainableEMA | None
    adapter: AdapterSpec | None
    output_dir: Path
    stop: StopRequest = field(default_factory=StopRequest)
    training_sources: dict = field(default_factory=dict)  # task -> what batches draw from (pools, caches)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    output_dir = Path(config.output_dir)
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"))
    # `accelerate launch --cpu --num_processes N` starts one process unless MPI is set up; a torchrun-style
    # launch (`accelerate launch --multi_gpu --num_processes N`) on a machine without CUDA runs N CPU
    # processes over gloo once accelerate is told to use the CPU.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=cpu,
        mixed_precision=config.train.mixed_precision,
        log_with=None if config.logging.log_with == "none" else config.logging.log_with,
        project_config=project,
        # Our scheduler counts optimizer steps; accelerate would otherwise step it once per process.
        step_scheduler_with_optimizer=False,
        # A mixed batch leaves other tasks' norms / convs / adapters without gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def adapter_spec(config: TrainConfig, unet_config) -> tuple[AdapterSpec | None, dict | None]:
    """The LoRA / IA3 adapter of this config (rank "auto" resolved) and the parameter counts behind it."""
    if config.method not in ADAPTER_METHODS:
        return None, None
    section = config.adapter
    counts = parameter_counts(unet_config, mtu_config_of(config), section.rank, section.alpha)
    rank = counts["lora_rank"] if config.method == "lora" else 0
    return AdapterSpec(config.method, rank, section.alpha, section.dropout), counts


def dry_run(config: TrainConfig) -> str:
    """Trainable parameter counts of every method for this config (no weights are loaded)."""
    from mtu.training.components import unet_config

    config.check()
    if config.method == "add-task":
        from mtu.training.extend import dry_run_text

        return dry_run_text(config, unet_config(config.model))
    adapter = config.adapter
    counts = parameter_counts(unet_config(config.model), mtu_config_of(config), adapter.rank, adapter.alpha)
    return f"{config.model}, tasks {config.task_names}\n" + format_counts(counts, config.method)


def build_run(config: TrainConfig, accelerator) -> Run:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    components = load_components(config.model, config.data.resolution)
    adapter, counts = adapter_spec(config, components.unet.config)
    model = build_model(components.unet, config.method, mtu_config_of(config), adapter, config.extends)
    note = f"; LoRA rank {adapter.rank}" if config.method == "lora" else ""
    note += f"; MTU would train {counts['mtu']:,}" if counts else ""
    count = trainable_count(model)
    accelerator.print(f"trainable parameters: {count:,} ({config.method}, tasks {config.task_names}{note})")
    if config.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.train.mixed_precision, torch.float32)
    components.to(accelerator.device, weight_dtype)
    model.to(accelerator.device)
    section = config.train
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameter_groups(model, section.learning_rate, section.lr_multipliers),
        lr=section.learning_rate,
        betas=(section.adam_beta1, section.adam_beta2),
        eps=section.adam_epsilon,
        weight_decay=section.weight_decay,
        fused=True,  # one kernel for all tensors; measured: a cached Shapes step 0.41 -> 0.39 s on one CPU thread
    )
    lr_scheduler = get_scheduler(
        section.lr_scheduler, optimizer, num_warmup_steps=section.lr_warmup_steps, num_training_steps=section.max_steps
    )
    prepared, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema = TrainableEMA(parameters, section.ema_decay) if section.ema_decay is not None else None
    progress = Progress()
    noise_scheduler = DDPMScheduler.from_config(components.scheduler_config)
    run = Run(config, accelerator, components, prepared, optimizer, lr_scheduler, noise_scheduler, progress, ema,
              adapter, Path(config.output_dir))  # fmt: skip
    return run


def parameter_groups(model: torch.nn.Module, learning_rate: float, multipliers: dict[str, float]) -> list[dict]:
    """AdamW groups: trainable parameters at `learning_rate` times the first matching multiplier (else 1)."""
    import re

    groups: dict[float, list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            factor = next((f for pattern, f in multipliers.items() if re.search(pattern, name)), 1.0)
            groups.setdefault(float(factor), []).append(parameter)
    return [{"params": params, "lr": learning_rate * factor} for factor, params in groups.items()]


def resolve_seed(config: TrainConfig, accelerator) -> int:
    """The data seed: the config's, or one drawn now and shared by every process (recorded in checkpoints)."""
    from accelerate.utils import broadcast_object_list, set_seed

    if config.seed is not None:
        set_seed(config.seed)
        return config.seed
    drawn = [int(np.random.SeedSequence().generate_state(1)[0])]
    return broadcast_object_list(drawn)[0] if accelerator.num_processes > 1 else drawn[0]


def config_text(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def restore(run: Run, resume: str | None) -> None:
    """Load the checkpoint `resume` names, after checking it belongs to this kind of run."""
    existing = list_checkpoints(run.output_dir)
    if resume is None:
        if existing:
            raise ValueError(
                f"{run.output_dir} already has checkpoints (latest: {existing[-1].name}); pass --resume latest to "
                "continue that run, or choose another --output-dir"
            )
        return
    checkpoint = find_checkpoint(resume, run.output_dir)
    if checkpoint is None:
        run.accelerator.print(f"--resume {resume}: no checkpoint in {run.output_dir} yet; starting a new run")
        return
    check_loadable(checkpoint)  # an older pickle checkpoint is refused before anything in it is read
    _check_compatible(run.config, checkpoint)
    load_checkpoint(run, checkpoint)
    run.accelerator.print(f"resumed from {checkpoint} at step {run.progress.step}")


def _check_compatible(config: TrainConfig, checkpoint: Path) -> None:
    saved = saved_config(checkpoint)
    current = config.to_dict()
    changed = [key for key in FIXED_ON_RESUME if saved.get(key) != current.get(key)]
    # Tasks: their names, order and layouts fix the weights' shapes; weights and sources may change.
    layouts = [[(name, task.get("conditioning")) for name, task in c["tasks"].items()] for c in (saved, current)]
    if layouts[0] != layouts[1]:
        changed.append("tasks (names, order or conditioning)")
    if (saved.get("train", {}).get("ema_decay") is None) != (config.train.ema_decay is None):
        changed.append("train.ema_decay (on/off)")  # the checkpoint holds an EMA exactly when the run had one
    if changed:
        raise ValueError(
            f"cannot resume from {checkpoint}: {changed} differ from the run that wrote it; "
            "resume with its own config (its train_config.yaml), or start a new run"
        )


def train_batch(run: Run, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample diffusion losses (B,) and task ids (B,) of one micro-batch (cached or not: `mtu.training.cache`)."""
    components, device = run.components, run.accelerator.device
    specs = run.config.task_specs()
    encoded = batch["encoded"] if "encoded" in batch else encode_batch(components, batch, specs)
    encoded = {key: value.to(device) for key, value in encoded.items()}
    generators = [torch.Generator().manual_seed(int(seed)) for seed in batch["noise_seeds"]]
    shape = encoded["mean"].shape[1:]

    def normal() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    latents = components.target_latents(encoded["mean"], encoded["std"], normal())
    noise = normal()
    steps = run.noise_scheduler.config.num_train_timesteps
    timesteps = torch.cat([torch.randint(0, steps, (1,), generator=g) for g in generators]).to(device)
    noisy = run.noise_scheduler.add_noise(latents, noise, timesteps)
    prediction_type = run.noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = run.noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"prediction_type {prediction_type!r} is not supported; valid: ['epsilon', 'v_prediction']")
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
    return ((prediction.float() - target.float()) ** 2).mean(dim=(1, 2, 3)), task_ids


def optimizer_step(run: Run, micro: list[dict]) -> dict:
    """Forward / backward over the micro-batches of one optimizer step, then (if the loss is finite) update."""
    accelerator, tasks = run.accelerator, run.task_names
    sums = torch.zeros(2 * len(tasks) + 2, dtype=torch.float64)  # per-task loss sums, per-task counts, skips, stop
    for index, batch in enumerate(micro):
        if run.config.method in ADAPTER_METHODS:
            activate(run.unwrapped, tasks[int(batch["task_ids"][0])])
        last = index == len(micro) - 1
        with nullcontext() if last else accelerator.no_sync(run.model):
            losses, task_ids = train_batch(run, batch)
            accelerator.backward(losses.mean() / len(micro))
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


class Feedback:
    """Progress bar with per-task losses, JSONL + tracker logs every `logging.every` steps."""

    def __init__(self, run: Run) -> None:
        self.run, self.every = run, run.config.logging.every
        self.window: dict[str, list[float]] = {}
        self.started, self.start_step = time.perf_counter(), run.progress.step
        main = run.accelerator.is_main_process
        self.bar = tqdm(total=run.config.train.max_steps, initial=run.progress.step, desc="train", disable=not main,
                        dynamic_ncols=True, file=sys.stderr)  # fmt: skip
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
    with (run.ema.swapped() if run.ema else nullcontext()), run.accelerator.autocast():
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
    from mtu.training.sources import ShapesSource, UnreadableSample

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


def open_sources(config: TrainConfig) -> dict:
    return {name: open_source(name, task, config.data.resolution) for name, task in config.tasks.items()}


def data_stream(run: Run, sources: dict):
    """Iterator over this process's micro-batches from the current step to max_steps."""
    config, accelerator = run.config, run.accelerator
    layout = Layout(config.data.batch_size, config.train.gradient_accumulation_steps, accelerator.num_processes,
                    accelerator.process_index)  # fmt: skip
    section = config.data
    dataset = StepBatches(
        sources,
        {name: task.weight for name, task in config.tasks.items()},
        run.progress.data_seed,
        layout,
        Dropout(section.text_dropout, section.image_dropout, section.both_dropout),
        one_task_per_batch=config.method in ADAPTER_METHODS,
        max_skips=section.max_skips,
    )
    return iter(micro_batches(dataset, run.progress.step, config.train.max_steps, section.num_workers))


def train(config: TrainConfig, resume: str | None = None, stop_after: int | None = None) -> dict:
    """Train `config` to `config.train.max_steps` optimizer steps, or until SIGINT / SIGTERM.

    Args:
        config: the run (validated again here).
        resume: "latest", a checkpoint folder or a run folder; None starts a new run (refused when the
            output folder already has checkpoints).
        stop_after: stop this invocation after this many optimizer steps, with a checkpoint, as a signal
            would (for time-limited jobs); the LR schedule still spans `max_steps`.

    Returns:
        {"step", "stopped" (True when a signal ended the run early), "checkpoint" (the last one written),
        "model" (the final model folder, when the run finished), "loss", "skipped_samples"}.

    Raises:
        RuntimeError: the loss became NaN / inf (the last good checkpoint is kept, nothing newer written).
    """
    config.check()
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1 optimizer step, got {stop_after}")
    accelerator = make_accelerator(config)
    try:
        run, sources = _start(config, accelerator, resume)
        with run.stop:
            return _loop(run, sources, None if stop_after is None else run.progress.step + stop_after)
    finally:
        accelerator.end_training()
        _release_state(accelerator)


def _start(config: TrainConfig, accelerator, resume: str | None) -> tuple[Run, dict]:
    """Open the data, build the model, restore a checkpoint, start the trackers."""
    seed = resolve_seed(config, accelerator)
    sources = open_sources(config)
    run = build_run(config, accelerator)
    run.training_sources = training_sources(config, run.components, sources, accelerator)
    run.progress.data_seed = seed
    restore(run, resume)
    if accelerator.is_main_process:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        (run.output_dir / CONFIG_FILE).write_text(config_text(config))
    if config.logging.log_with != "none":
        accelerator.init_trackers("mtu-train", config=_flat(config.to_dict()))
    return run, sources


def _release_state(accelerator) -> None:
    """Let a later `train` call in this process use other accelerate settings (e.g. mixed precision).

    accelerate keeps its state in a process-wide singleton; a single-process run can drop it. A distributed
    process keeps it (its process group lives as long as the process).
    """
    from accelerate.state import AcceleratorState

    if accelerator.num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)


def _loop(run: Run, sources: dict, stop_at: int | None) -> dict:
    config, accelerator = run.config, run.accelerator
    previews = preview_pairs(sources, config.logging.sample_count) if config.logging.sample_every else {}
    stream, feedback = data_stream(run, run.training_sources), Feedback(run)
    checkpoint, result = None, {"loss": float("nan")}
    try:
        while run.progress.step < config.train.max_steps:
            micro = [next(stream) for _ in range(config.train.gradient_accumulation_steps)]
            try:
                result = optimizer_step(run, micro)
            except NonFiniteLoss as error:
                raise _non_finite(run, error) from None
            feedback.record(result)
            step = run.progress.step
            result["stop"] = result["stop"] or step == stop_at
            due = step % config.checkpoint.every == 0 or step == config.train.max_steps
            if due or result["stop"]:
                keep = config.checkpoint.keep
                checkpoint = save_checkpoint(run, step, keep, config_text(config))
            if config.logging.sample_every and step % config.logging.sample_every == 0:
                write_samples(run, previews)
            if result["stop"] and step < config.train.max_steps:
                accelerator.print(f"stopped at step {step}: checkpoint {checkpoint}; continue with --resume latest")
                return _summary(run, checkpoint, result, stopped=True)
    finally:
        feedback.close()
    return _summary(run, checkpoint, result, stopped=False, final=_save_final(run))


def _non_finite(run: Run, error: NonFiniteLoss) -> RuntimeError:
    found = list_checkpoints(run.output_dir)
    kept = f"the last good checkpoint is {found[-1]} (step {step_of(found[-1])})" if found else "no checkpoint yet"
    return RuntimeError(
        f"stopped at step {run.progress.step + 1}: {error}; the update was not applied and nothing newer was saved; "
        f"{kept}. Lower train.learning_rate, set train.max_grad_norm, or use mixed_precision: no / bf16, then --resume"
    )


def _save_final(run: Run) -> Path | None:
    """The finished model (EMA weights when there is an EMA) in output_dir/model."""
    folder = run.output_dir / MODEL_DIR
    if run.accelerator.is_main_process:
        with run.ema.swapped() if run.ema else nullcontext():
            save_trained(run.unwrapped, folder, run.config.method, run.adapter)
        (folder / CONFIG_FILE).write_text(config_text(run.config))
    run.accelerator.wait_for_everyone()
    return folder


def _summary(run: Run, checkpoint: Path | None, result: dict, stopped: bool, final: Path | None = None) -> dict:
    return {
        "step": run.progress.step,
        "stopped": stopped,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "model": str(final) if final else None,
        "loss": result["loss"],
        "skipped_samples": run.progress.skipped,
        "main_process": run.accelerator.is_main_process,
    }


def _flat(values: dict, prefix: str = "") -> dict:
    """Nested config -> {"train.learning_rate": 1e-4, ...} with tensorboard-friendly scalar values."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
