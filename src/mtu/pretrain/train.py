"""The shapes-base recipe: train a tiny Stable Diffusion model from scratch on the Shapes world.

Stage 1 trains the VAE; stage 2 freezes it and trains text encoder + UNet jointly. Both draw fresh
scenes every step, checkpoint atomically, stop cleanly on Ctrl-C / SIGTERM and resume bit-for-bit.

Run folder layout (``out``)::

    run_config.json   settings (reused on --resume)      vocabulary.json  words the tokenizer was built from
    tokenizer/        the CLIPTokenizer                   vae/             the finished VAE (+ report.json)
    checkpoints/      last two checkpoints                metrics.jsonl    loss / lr / s-per-step log

Example:
    >>> pretrain_shapes("runs/shapes-base", export_to="src/mtu/assets/shapes-base")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler
from transformers import CLIPTokenizer

from mtu.data.shapes import vocabulary
from mtu.pretrain.checkpoint import latest_checkpoint, load_checkpoint
from mtu.pretrain.components import build_text_encoder, build_train_scheduler, build_unet, build_vae
from mtu.pretrain.config import PretrainConfig, load_run_config, save_run_config
from mtu.pretrain.data import SceneBatches, held_out_images, step_batches
from mtu.pretrain.export import export_pipeline
from mtu.pretrain.loop import Stage, StepBudget, log_metrics, lr_at, run_steps
from mtu.pretrain.objectives import diffusion_loss, latent_scaling_factor, vae_loss, vae_psnr
from mtu.pretrain.tokenizer import build_tokenizer, save_tokenizer
from mtu.utils.outputs import replace_folder
from mtu.utils.signals import StopRequest

VAE_REPORT = "report.json"
_PSNR_EVERY = 500  # VAE steps between quick PSNR checks (100 held-out scenes)


def pretrain_shapes(
    out: str | Path,
    overrides: dict | None = None,
    *,
    resume: bool = False,
    export_to: str | Path | None = None,
    threads: int = 1,
    stop_after: int | None = None,
    device: str = "cpu",
    data_workers: int = 0,
    time_limit: float | None = None,
) -> dict:
    """Run (or continue) the recipe in folder `out`.

    Args:
        out: run folder (created); see the module docstring for its layout.
        overrides: `PretrainConfig` fields to change (None values are ignored). A fresh run applies them
            to the defaults; a resumed run to its saved settings, where `sizes` and `seed` are fixed.
        resume: continue from the last checkpoint in `out` (required when `out` already holds a run).
        export_to: folder to write the stage-2 model to, every `export_every` steps and at the end.
        threads: torch intra-op threads (1 leaves the other core of a 2-core machine free).
        stop_after: checkpoint and return after this many optimizer steps (tests, time-boxed runs).
        device: torch device to train on ("cpu", "cuda", ...). Data, noise and timesteps are drawn on
            the CPU from the same seeds whatever the device.
        data_workers: processes rendering batches ahead (0: render in the training process). A GPU
            needs several: one CPU core renders ~1,300 scenes per second.
        time_limit: checkpoint and return once this many seconds have passed (at a step boundary).

    Returns:
        ``{"stage", "step", "finished", "vae_psnr_db"}`` where training stopped.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if data_workers < 0:
        raise ValueError(f"data_workers must be >= 0, got {data_workers}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    torch.set_num_threads(threads)
    out = Path(out)
    config = _prepare_run(out, overrides or {}, resume)
    hardware = Hardware(torch.device(device), data_workers)
    budget = StepBudget(stop_after, time_limit)
    with StopRequest() as stop:
        if not (out / "vae" / VAE_REPORT).is_file():
            if not _train_vae(out, config, _latest_of_stage(out, "vae"), stop, budget, hardware):
                return _summary(out, "vae", finished=False)
            if stop.requested or budget.exhausted:
                return _summary(out, "unet", finished=False)
        elif config.vae_steps != _vae_report(out)["steps"]:
            steps = _vae_report(out)["steps"]
            print(f"note: the VAE is final after {steps} steps; --vae-steps is ignored", file=sys.stderr)
        finished = _train_unet(out, config, _latest_of_stage(out, "unet"), stop, budget, export_to, hardware)
    return _summary(out, "unet", finished)


def _prepare_run(out: Path, overrides: dict, resume: bool) -> PretrainConfig:
    """Check the folder against `resume`, settle the config and write run_config / tokenizer on a fresh run."""
    has_run = (out / "run_config.json").is_file()
    if resume and not has_run:
        raise FileNotFoundError(f"--resume given but {out} holds no run; drop --resume to start a new one")
    if not resume and has_run:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not resume:
        config = PretrainConfig().with_overrides(overrides)
        out.mkdir(parents=True, exist_ok=True)
        words = vocabulary()
        save_tokenizer(build_tokenizer(words, config.sizes.max_length), out / "tokenizer")
        (out / "vocabulary.json").write_text(json.dumps(words) + "\n")
        save_run_config(out, config)
        return config
    saved = load_run_config(out)
    config = saved.with_overrides(overrides)
    for fixed in ("sizes", "seed"):
        if getattr(config, fixed) != getattr(saved, fixed):
            raise ValueError(
                f"cannot change {fixed} of a run on resume (saved {getattr(saved, fixed)}); start a new run instead"
            )
    if config.unet_steps != saved.unet_steps:
        print(f"note: unet_steps {saved.unet_steps} -> {config.unet_steps} re-stretches the lr decay", file=sys.stderr)
    save_run_config(out, config)
    return config


def _summary(out: Path, stage: str, finished: bool) -> dict:
    checkpoint = latest_checkpoint(out)
    step = json.loads((checkpoint / "state.json").read_text())["step"] if checkpoint else 0
    report = out / "vae" / VAE_REPORT
    psnr = json.loads(report.read_text())["psnr_db"] if report.is_file() else None
    return {"stage": stage, "step": step, "finished": finished, "vae_psnr_db": psnr}


def _latest_of_stage(out: Path, stage: str) -> Path | None:
    checkpoint = latest_checkpoint(out)
    return checkpoint if checkpoint is not None and checkpoint.name.split("-")[1] == stage else None


def _vae_report(out: Path) -> dict:
    return json.loads((out / "vae" / VAE_REPORT).read_text())


@dataclass(frozen=True)
class Hardware:
    """Where a run executes; it changes speed, not the recipe (the card reports it)."""

    device: torch.device
    data_workers: int

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"one {torch.cuda.get_device_name(self.device)} GPU, {self.data_workers} data worker(s)"
        threads = f"{torch.get_num_threads()} torch thread(s) of a {os.cpu_count()}-core CPU"
        return f"{threads}, {self.data_workers} data worker(s)"

    def batches(self, dataset: SceneBatches, first_step: int):
        return step_batches(dataset, first_step, self.data_workers, pin_memory=self.device.type == "cuda")


def _stage_index(stage: str) -> int:
    # Distinct, reproducible streams per stage; none can reproduce the held-out evaluation streams.
    return 1 + ("vae", "unet").index(stage)


def _stage_generator(config: PretrainConfig, stage: str) -> torch.Generator:
    return torch.Generator().manual_seed(config.seed * 1000 + _stage_index(stage))


def _vae_step(vae, stage: Stage, config: PretrainConfig, batch) -> dict:
    images = batch[0].to(stage.device, non_blocking=True)
    losses = vae_loss(vae, images, stage.generator, config.kl_weight)
    stage.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    stage.optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _train_vae(out: Path, config: PretrainConfig, checkpoint: Path | None, stop, budget, hardware: Hardware) -> bool:
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        vae = build_vae(config.sizes).to(hardware.device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=config.weight_decay)
    stage = Stage("vae", {"vae": vae}, optimizer, _stage_generator(config, "vae"))
    if checkpoint is not None:
        load_checkpoint(checkpoint, stage)
    stage.hardware = hardware.describe()
    quick_eval = held_out_images(min(100, config.eval_scenes))
    dataset = SceneBatches(config.seed, _stage_index("vae"), config.vae_batch_size, config.vae_steps)

    def check_psnr(step: int) -> None:
        if step % _PSNR_EVERY == 0:
            log_metrics(out, {"stage": "vae", "step": step, "psnr_db_100": vae_psnr(vae, quick_eval)})

    schedule = partial(
        lr_at,
        total=config.vae_steps,
        peak=config.vae_lr,
        warmup=config.vae_warmup_steps,
        final_fraction=config.final_lr_fraction,
    )
    done = run_steps(
        stage,
        config.vae_steps,
        schedule,
        hardware.batches(dataset, stage.step),
        partial(_vae_step, vae, stage, config),
        out,
        config.checkpoint_every,
        stop,
        budget,
        after_step=check_psnr,
    )
    if done:
        _finish_vae(out, vae, stage, config)
    return done


def _finish_vae(out: Path, vae: AutoencoderKL, stage: Stage, config: PretrainConfig) -> None:
    """Measure the VAE, set its scaling factor and save it as ``out/vae`` (a diffusers folder)."""
    vae.eval()
    psnr = vae_psnr(vae, held_out_images(config.eval_scenes))
    scale = latent_scaling_factor(vae, np.random.default_rng([config.seed, 99]), torch.Generator().manual_seed(99))
    vae.register_to_config(scaling_factor=scale)
    report = {
        "steps": stage.step,
        "psnr_db": psnr,
        "eval_scenes": config.eval_scenes,
        "scaling_factor": scale,
        "seconds_per_step": stage.seconds_per_step,
        "hardware": stage.hardware,
        "seconds_total": stage.seconds_total,
    }
    tmp = out / "vae.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    vae.to("cpu").save_pretrained(tmp)
    (tmp / VAE_REPORT).write_text(json.dumps(report, indent=1) + "\n")
    replace_folder(tmp, out / "vae")
    log_metrics(out, {"stage": "vae", "step": stage.step, "psnr_db": psnr, "scaling_factor": scale})
    print(
        f"VAE done: PSNR {psnr:.2f} dB on {config.eval_scenes} held-out scenes, scaling factor {scale:.4f}",
        file=sys.stderr,
    )


def _unet_step(models: dict, stage: Stage, config: PretrainConfig, scheduler: DDPMScheduler, batch) -> dict:
    vae = models["vae"]
    images, ids = (tensor.to(stage.device, non_blocking=True) for tensor in batch)
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.sample(generator=stage.generator) * vae.config.scaling_factor
    loss = diffusion_loss(
        models["unet"], models["text_encoder"], latents, ids, scheduler, stage.generator, config.min_snr_gamma
    )
    stage.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        parameters = [p for group in stage.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
    stage.optimizer.step()
    return {"loss": float(loss.detach())}


def _unet_stage(out: Path, config: PretrainConfig, device: torch.device) -> tuple[Stage, dict]:
    """A fresh stage-2 `Stage` and its fixed parts (tokenizer, frozen VAE)."""
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer")
    vae = AutoencoderKL.from_pretrained(out / "vae").eval().requires_grad_(False).to(device)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        text_encoder = build_text_encoder(config.sizes, tokenizer).to(device)
        unet = build_unet(config.sizes).to(device)
    trained = {"text_encoder": text_encoder, "unet": unet}
    parameters = [p for module in trained.values() for p in module.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    stage = Stage("unet", trained, optimizer, _stage_generator(config, "unet"), ema_decay=config.ema_decay)
    return stage, {"tokenizer": tokenizer, "vae": vae, **trained}


def _export(out: Path, config: PretrainConfig, stage: Stage, models: dict, dest: Path) -> None:
    report = _vae_report(out)
    progress = {
        "vae_hardware": report.get("hardware"),
        "unet_hardware": stage.hardware,
        "config": config.to_dict(),
        "vae_step": report["steps"],
        "unet_step": stage.step,
        "vae_seconds_per_step": report["seconds_per_step"],
        "unet_seconds_per_step": stage.seconds_per_step,
        "vae_seconds_total": report.get("seconds_total"),
        "unet_seconds_total": stage.seconds_total,
        "vae_psnr_db": report["psnr_db"],
        "eval_scenes": report["eval_scenes"],
        "vocabulary_words": len(json.loads((out / "vocabulary.json").read_text())),
    }
    shipped = {name: stage.ema_module(name, copy.deepcopy(models[name])).cpu() for name in ("text_encoder", "unet")}
    vae = copy.deepcopy(models["vae"]).cpu()
    export_pipeline(dest, models["tokenizer"], shipped["text_encoder"], vae, shipped["unet"], progress)


def _train_unet(
    out: Path, config: PretrainConfig, checkpoint: Path | None, stop, budget, export_to, hardware: Hardware
) -> bool:
    stage, models = _unet_stage(out, config, hardware.device)
    if checkpoint is not None:
        load_checkpoint(checkpoint, stage)
    stage.hardware = hardware.describe()
    scheduler = build_train_scheduler()
    dataset = SceneBatches(
        config.seed,
        _stage_index("unet"),
        config.batch_size,
        config.unet_steps,
        config.caption_dropout,
        models["tokenizer"],
    )

    def maybe_export(step: int) -> None:
        # Also when a time limit or signal stops the run: a time-boxed run still leaves a model.
        scheduled = step % config.export_every == 0 or step == config.unet_steps
        if export_to is not None and (scheduled or stop.requested or budget.exhausted):
            _export(out, config, stage, models, Path(export_to))

    schedule = partial(
        lr_at,
        total=config.unet_steps,
        peak=config.lr,
        warmup=config.warmup_steps,
        final_fraction=config.final_lr_fraction,
    )
    step_fn = partial(_unet_step, models, stage, config, scheduler)
    return run_steps(
        stage,
        config.unet_steps,
        schedule,
        hardware.batches(dataset, stage.step),
        step_fn,
        out,
        config.checkpoint_every,
        stop,
        budget,
        after_step=maybe_export,
    )


def export_run(out: str | Path, dest: str | Path) -> Path:
    """Export the latest stage-2 checkpoint of run `out` to `dest` (safe beside a running training)."""
    out = Path(out)
    config = load_run_config(out)
    checkpoint = _latest_of_stage(out, "unet")
    if checkpoint is None:
        raise FileNotFoundError(
            f"{out} has no stage-2 (text encoder + UNet) checkpoint yet (latest: {latest_checkpoint(out)}); "
            "export once the VAE is done and the UNet has passed its first checkpoint"
        )
    stage, models = _unet_stage(out, config, torch.device("cpu"))
    load_checkpoint(checkpoint, stage)
    _export(out, config, stage, models, Path(dest))
    return Path(dest)
