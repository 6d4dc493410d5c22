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
import shutil
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler
from transformers import CLIPTokenizer

from mtu.data.shapes import vocabulary
from mtu.pretrain.checkpoint import replace_dir
from mtu.pretrain.components import build_text_encoder, build_train_scheduler, build_unet, build_vae
from mtu.pretrain.config import PretrainConfig, load_run_config, save_run_config
from mtu.pretrain.data import held_out_images, sample_batch
from mtu.pretrain.export import export_pipeline
from mtu.pretrain.loop import Stage, StepBudget, latest_checkpoint, log_metrics, lr_at, run_steps
from mtu.signals import StopRequest
from mtu.pretrain.objectives import diffusion_loss, latent_scaling_factor, vae_loss, vae_psnr
from mtu.pretrain.tokenizer import build_tokenizer, save_tokenizer

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

    Returns:
        ``{"stage", "step", "finished", "vae_psnr_db"}`` where training stopped.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    out = Path(out)
    config = _prepare_run(out, overrides or {}, resume)
    budget = StepBudget(stop_after)
    with StopRequest() as stop:
        if not (out / "vae" / VAE_REPORT).is_file():
            if not _train_vae(out, config, _latest_of_stage(out, "vae"), stop, budget):
                return _summary(out, "vae", finished=False)
            if stop.requested or budget.exhausted:
                return _summary(out, "unet", finished=False)
        elif config.vae_steps != _vae_report(out)["steps"]:
            steps = _vae_report(out)["steps"]
            print(f"note: the VAE is final after {steps} steps; --vae-steps is ignored", file=sys.stderr)
        finished = _train_unet(out, config, _latest_of_stage(out, "unet"), stop, budget, export_to)
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


def _stage_generators(config: PretrainConfig, stage: str) -> tuple[np.random.Generator, torch.Generator]:
    # Distinct, reproducible streams per stage; none can reproduce the held-out evaluation streams.
    index = 1 + ("vae", "unet").index(stage)
    return np.random.default_rng([config.seed, index]), torch.Generator().manual_seed(config.seed * 1000 + index)


def _vae_step(vae, stage: Stage, config: PretrainConfig) -> dict:
    images, _ = sample_batch(stage.rng, config.vae_batch_size)
    losses = vae_loss(vae, images, stage.generator, config.kl_weight)
    stage.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    stage.optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _train_vae(out: Path, config: PretrainConfig, checkpoint: Path | None, stop, budget) -> bool:
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        vae = build_vae(config.sizes)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=config.weight_decay)
    rng, generator = _stage_generators(config, "vae")
    stage = Stage("vae", {"vae": vae}, optimizer, rng, generator)
    if checkpoint is not None:
        stage.restore(checkpoint)
    quick_eval = held_out_images(min(100, config.eval_scenes))

    def check_psnr(step: int) -> None:
        if step % _PSNR_EVERY == 0:
            log_metrics(out, {"stage": "vae", "step": step, "psnr_db_100": vae_psnr(vae, quick_eval)})

    schedule = partial(lr_at, total=config.vae_steps, peak=config.vae_lr, warmup=config.vae_warmup_steps,
                       final_fraction=config.final_lr_fraction)  # fmt: skip
    done = run_steps(stage, config.vae_steps, schedule, partial(_vae_step, vae, stage, config), out,
                     config.checkpoint_every, stop, budget, after_step=check_psnr)  # fmt: skip
    if done:
        _finish_vae(out, vae, stage, config)
    return done


def _finish_vae(out: Path, vae: AutoencoderKL, stage: Stage, config: PretrainConfig) -> None:
    """Measure the VAE, set its scaling factor and save it as ``out/vae`` (a diffusers folder)."""
    vae.eval()
    psnr = vae_psnr(vae, held_out_images(config.eval_scenes))
    scale = latent_scaling_factor(vae, np.random.default_rng([config.seed, 99]), torch.Generator().manual_seed(99))
    vae.register_to_config(scaling_factor=scale)
    report = {"steps": stage.step, "psnr_db": psnr, "eval_scenes": config.eval_scenes,
              "scaling_factor": scale, "seconds_per_step": stage.seconds_per_step}  # fmt: skip
    tmp = out / "vae.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    vae.save_pretrained(tmp)
    (tmp / VAE_REPORT).write_text(json.dumps(report, indent=1) + "\n")
    replace_dir(tmp, out / "vae")
    log_metrics(out, {"stage": "vae", "step": stage.step, "psnr_db": psnr, "scaling_factor": scale})
    print(f"VAE done: PSNR {psnr:.2f} dB on {config.eval_scenes} held-out scenes, scaling factor {scale:.4f}",
          file=sys.stderr)  # fmt: skip


def _unet_step(models: dict, stage: Stage, config: PretrainConfig, scheduler: DDPMScheduler) -> dict:
    tokenizer, vae = models["tokenizer"], models["vae"]
    images, captions = sample_batch(stage.rng, config.batch_size, config.caption_dropout)
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # fmt: skip
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.sample(generator=stage.generator) * vae.config.scaling_factor
    loss = diffusion_loss(models["unet"], models["text_encoder"], latents, ids, scheduler, stage.generator,
                          config.min_snr_gamma)  # fmt: skip
    stage.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        parameters = [p for group in stage.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
    stage.optimizer.step()
    return {"loss": float(loss.detach())}


def _unet_stage(out: Path, config: PretrainConfig) -> tuple[Stage, dict]:
    """A fresh stage-2 `Stage` and its fixed parts (tokenizer, frozen VAE)."""
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer")
    vae = AutoencoderKL.from_pretrained(out / "vae").eval().requires_grad_(False)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        text_encoder = build_text_encoder(config.sizes, tokenizer)
        unet = build_unet(config.sizes)
    trained = {"text_encoder": text_encoder, "unet": unet}
    parameters = [p for module in trained.values() for p in module.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    rng, generator = _stage_generators(config, "unet")
    stage = Stage("unet", trained, optimizer, rng, generator, ema_decay=config.ema_decay)
    return stage, {"tokenizer": tokenizer, "vae": vae, **trained}


def _export(out: Path, config: PretrainConfig, stage: Stage, models: dict, dest: Path) -> None:
    report = _vae_report(out)
    progress = {
        "config": config.to_dict(),
        "vae_step": report["steps"],
        "unet_step": stage.step,
        "vae_seconds_per_step": report["seconds_per_step"],
        "unet_seconds_per_step": stage.seconds_per_step,
        "vae_psnr_db": report["psnr_db"],
        "eval_scenes": report["eval_scenes"],
        "vocabulary_words": len(json.loads((out / "vocabulary.json").read_text())),
    }
    shipped = {name: stage.ema_module(name, copy.deepcopy(models[name])) for name in ("text_encoder", "unet")}
    export_pipeline(dest, models["tokenizer"], shipped["text_encoder"], models["vae"], shipped["unet"], progress)


def _train_unet(out: Path, config: PretrainConfig, checkpoint: Path | None, stop, budget, export_to) -> bool:
    stage, models = _unet_stage(out, config)
    if checkpoint is not None:
        stage.restore(checkpoint)
    scheduler = build_train_scheduler()

    def maybe_export(step: int) -> None:
        if export_to is not None and (step % config.export_every == 0 or step == config.unet_steps):
            _export(out, config, stage, models, Path(export_to))

    schedule = partial(lr_at, total=config.unet_steps, peak=config.lr, warmup=config.warmup_steps,
                       final_fraction=config.final_lr_fraction)  # fmt: skip
    step_fn = partial(_unet_step, models, stage, config, scheduler)
    return run_steps(stage, config.unet_steps, schedule, step_fn, out, config.checkpoint_every, stop, budget,
                     after_step=maybe_export)  # fmt: skip


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
    stage, models = _unet_stage(out, config)
    stage.restore(checkpoint)
    _export(out, config, stage, models, Path(dest))
    return Path(dest)
