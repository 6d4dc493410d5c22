"""The training loop on accelerate: `train` runs steps to `max_steps`, with checkpoints, feedback and stops.

    >>> from mtu.training import load_config, train
    >>> train(load_config("configs/shapes.yaml", {"train.max_steps": 100}), resume="latest")

Shape of accelerate's `nlp_example.py` (build data, build model, loop), split by job: `mtu.training.run`
(setup and resume), `mtu.training.step` (the loss on a batch, one optimizer step), `mtu.training.feedback`
(logs, sample grids). Steps are optimizer steps. Checkpoints are written and read by
`mtu.training.checkpoint` as safetensors + JSON (not accelerate's `save_state` / `load_state`, whose
pickles run code when loaded); the data stream is a pure function of (seed, step), so resuming needs no
skipped batches (see `mtu.training.data`).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from mtu.loading import save_trained
from mtu.sampler import save_sampler
from mtu.training.cache import training_sources
from mtu.training.checkpoint import CONFIG_FILE, config_text, latest_checkpoint, save_checkpoint, step_of
from mtu.training.config import TrainConfig
from mtu.training.counts import extend_dry_run, format_counts, parameter_counts
from mtu.training.data import Dropout, Layout, StepBatches, micro_batches
from mtu.training.feedback import Feedback, preview_pairs, write_samples
from mtu.training.methods import mtu_config_of
from mtu.training.run import (
    Run,
    build_run,
    make_accelerator,
    release_state,
    resolve_seed,
    restore,
    tracker_config,
)
from mtu.training.sampling import training_samplers
from mtu.training.sources import open_source
from mtu.training.step import NonFiniteLoss, optimizer_step

MODEL_DIR = "model"


def dry_run(config: TrainConfig) -> str:
    """Trainable parameter counts of every method for this config (no weights are loaded)."""
    from mtu.training.components import unet_config

    config.check()
    if config.training_method.extends:
        return extend_dry_run(config, unet_config(config.model))
    adapter = config.adapter
    counts = parameter_counts(unet_config(config.model), mtu_config_of(config), adapter.rank, adapter.alpha)
    return f"{config.model}, tasks {config.task_names}\n" + format_counts(counts, config.method)


def open_sources(config: TrainConfig) -> dict:
    return {name: open_source(name, task, config.data.resolution) for name, task in config.tasks.items()}


def data_stream(run: Run, sources: dict):
    """Iterator over this process's micro-batches from the current step to max_steps."""
    config, accelerator = run.config, run.accelerator
    layout = Layout(
        config.data.batch_size,
        config.train.gradient_accumulation_steps,
        accelerator.num_processes,
        accelerator.process_index,
    )
    section = config.data
    dataset = StepBatches(
        sources,
        {name: task.weight for name, task in config.tasks.items()},
        run.progress.data_seed,
        layout,
        Dropout(section.text_dropout, section.image_dropout, section.both_dropout),
        one_task_per_batch=not config.training_method.mixes_tasks,
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
        release_state(accelerator)


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
        accelerator.init_trackers("mtu-train", config=tracker_config(config.to_dict()))
    return run, sources


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
                checkpoint = save_checkpoint(run.output_dir, run, config.checkpoint.keep)
            if config.logging.sample_every and step % config.logging.sample_every == 0:
                write_samples(run, previews)
            if result["stop"] and step < config.train.max_steps:
                accelerator.print(f"stopped at step {step}: checkpoint {checkpoint}; continue with --resume latest")
                return _summary(run, checkpoint, result, stopped=True)
    finally:
        feedback.close()
    return _summary(run, checkpoint, result, stopped=False, final=_save_final(run))


def _non_finite(run: Run, error: NonFiniteLoss) -> RuntimeError:
    last = latest_checkpoint(run.output_dir)
    kept = f"the last good checkpoint is {last} (step {step_of(last)})" if last else "no checkpoint yet"
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
            save_sampler(
                folder, training_samplers(run.config, run.unwrapped.task_names)
            )  # what its samples used: the model's defaults
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
