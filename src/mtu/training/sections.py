"""The sections of a training config besides its tasks and `mtu:` (an `mtu.MTUConfig`): adapters, data,
optimisation, checkpoints, logs."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field

from mtu.training.checks import choice, int_at_least, is_int, is_number, need

MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
LOG_WITH = ("tensorboard", "none")
CACHE_MODES = ("none", "latents")


@dataclass
class AdapterSection:
    """LoRA / IA3 baselines: one adapter per task on each FFN's two linears.

    Args:
        rank: LoRA rank, or "auto": the rank whose trainable parameter count is closest to MTU's.
        alpha: LoRA alpha; null = the rank (scale 1).
        dropout: LoRA dropout.
    """

    rank: int | str = "auto"
    alpha: float | None = None
    dropout: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.rank != "auto" and (not is_int(self.rank) or self.rank < 1):
            found.append(f"adapter.rank: must be 'auto' or an int >= 1, got {self.rank!r}")
        if self.alpha is not None and (not is_number(self.alpha) or self.alpha <= 0):
            found.append(f"adapter.alpha: must be a positive number or null, got {self.alpha!r}")
        if not is_number(self.dropout) or not 0 <= self.dropout < 1:
            found.append(f"adapter.dropout: must be in [0, 1), got {self.dropout!r}")
        return found


@dataclass
class DataSection:
    """Batches and conditioning dropout.

    Args:
        resolution: image side in pixels (images are resized and centre-cropped); a multiple of 8.
        batch_size: samples per process per micro-batch.
        num_workers: DataLoader worker processes (0: load in the training process).
        text_dropout, image_dropout, both_dropout: probabilities of dropping only the text, only the
            conditioning image, or both, per sample (InstructPix2Pix uses 0.05 each). Dropped text is the
            empty prompt; a dropped image is a zero latent. Tasks without a conditioning image (t2i,
            inpaint) drop their text with probability text_dropout + both_dropout.
        max_skips: unreadable samples tolerated in a row before the run stops (a dataset that is mostly corrupt).
        pool_size: train on a fixed pool per task: Shapes tasks draw this many examples once (seeded by
            `pool_seed`); a dataset's pool is its records, their random parts (caption choice, degradation,
            mask) drawn once per record. null: a fresh example (Shapes) or fresh random parts every draw.
        pool_seed: the seed of the Shapes pools (independent of `seed`, so runs that differ only in
            their training seed share one pool and one latent cache).
        cache: "latents": encode every pool entry once with the frozen VAE and text encoder(s) and train
            from the stored latents (`mtu.training.cache`); "none": encode every step. Needs a finite pool.
        cache_dir: where latent caches live (null: $MTU_CACHE_DIR, else ~/.cache/mtu/latents).
    """

    resolution: int = 64
    batch_size: int = 8
    num_workers: int = 0
    text_dropout: float = 0.05
    image_dropout: float = 0.05
    both_dropout: float = 0.05
    max_skips: int = 50
    pool_size: int | None = None
    pool_seed: int = 0
    cache: str = "none"
    cache_dir: str | None = None

    def problems(self) -> list[str]:
        found = []
        if self.pool_size is not None:
            int_at_least(found, "data.pool_size", self.pool_size, 1)
        int_at_least(found, "data.pool_seed", self.pool_seed, 0)
        choice(found, "data.cache", self.cache, CACHE_MODES)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            found.append(f"data.cache_dir: expected a folder path or null, got {self.cache_dir!r}")
        if not is_int(self.resolution) or self.resolution < 8 or self.resolution % 8:
            found.append(f"data.resolution: must be a positive multiple of 8, got {self.resolution!r}")
        for name, low in (("batch_size", 1), ("num_workers", 0), ("max_skips", 1)):
            int_at_least(found, f"data.{name}", getattr(self, name), low)
        probabilities = [self.text_dropout, self.image_dropout, self.both_dropout]
        if not all(is_number(p) and p >= 0 for p in probabilities) or sum(probabilities) > 1:
            found.append(
                f"data: text_dropout, image_dropout and both_dropout must be >= 0 and sum to <= 1, got {probabilities}"
            )
        return found


@dataclass
class TrainSection:
    """Optimisation. Steps are optimizer steps; one takes batch_size x processes x accumulation samples.

    Args:
        max_steps: optimizer steps of the whole run (the LR schedule spans them).
        gradient_accumulation_steps: micro-batches per optimizer step.
        learning_rate, lr_scheduler, lr_warmup_steps: diffusers `get_scheduler` settings.
        adam_beta1, adam_beta2, adam_epsilon, weight_decay: AdamW.
        max_grad_norm: gradient clipping (null: none).
        mixed_precision: "no", "fp16" or "bf16" (accelerate autocast; frozen parts in that dtype).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
        ema_decay: keep an exponential moving average of the trainable weights (null: none); the final
            model folder holds the EMA weights.
        router_z_loss: weight of the router z-loss (ST-MoE, Zoph et al. 2022): the mean over upcycled FFNs and
            samples of logsumexp(router logits)^2, added to the diffusion loss; it keeps logits small, against
            routers saturating on one expert. 0 turns it off.
        snr_gamma: min-SNR-gamma loss weighting (Hang et al., ICCV 2023; diffusers' `--snr_gamma`): each
            sample's loss is weighted by min(SNR, gamma) / SNR of its timestep; 5 is the paper's value.
            null turns it off.
        lr_multipliers: regular expression over trainable parameter names -> factor on learning_rate (the
            first match wins), e.g. {"conv_in|task_embedding|router": 10.0}: a zero-initialised input
            pathway or router can learn faster than the experts copied from the base.
    """

    max_steps: int = 1000
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = None
    router_z_loss: float = 0.0
    snr_gamma: float | None = None
    lr_multipliers: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        multipliers = self.lr_multipliers
        if not isinstance(multipliers, dict) or not all(
            isinstance(k, str) and is_number(v) and v > 0 for k, v in multipliers.items()
        ):
            found.append(f"train.lr_multipliers: expected a mapping regex -> number > 0, got {multipliers!r}")
        else:
            for pattern in multipliers:  # compiled now, not after the model has loaded
                try:
                    re.compile(pattern)
                except re.error as error:
                    found.append(f"train.lr_multipliers: key {pattern!r} is not a regular expression ({error})")
        for name, low in (("max_steps", 1), ("gradient_accumulation_steps", 1), ("lr_warmup_steps", 0)):
            int_at_least(found, f"train.{name}", getattr(self, name), low)
        for name in ("learning_rate", "adam_epsilon"):
            value = getattr(self, name)
            need(found, is_number(value) and value > 0, f"train.{name}: must be a number > 0, got {value!r}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            need(found, is_number(value) and 0 <= value < 1, f"train.{name}: must be in [0, 1), got {value!r}")
        decay_ok = is_number(self.weight_decay) and self.weight_decay >= 0
        need(found, decay_ok, f"train.weight_decay: must be >= 0, got {self.weight_decay!r}")
        if self.max_grad_norm is not None and (not is_number(self.max_grad_norm) or self.max_grad_norm <= 0):
            found.append(f"train.max_grad_norm: must be a number > 0 or null, got {self.max_grad_norm!r}")
        choice(found, "train.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        choice(found, "train.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        checkpointing = self.gradient_checkpointing
        message = f"train.gradient_checkpointing: must be true or false, got {checkpointing!r}"
        need(found, isinstance(checkpointing, bool), message)
        if self.ema_decay is not None and (not is_number(self.ema_decay) or not 0 < self.ema_decay < 1):
            found.append(f"train.ema_decay: must be in (0, 1) or null, got {self.ema_decay!r}")
        z_loss_ok = is_number(self.router_z_loss) and 0 <= self.router_z_loss < float("inf")
        need(
            found,
            z_loss_ok,
            f"train.router_z_loss: must be a finite number >= 0 (0 turns it off), got {self.router_z_loss!r}",
        )
        gamma = self.snr_gamma
        if gamma is not None and not (is_number(gamma) and 0 < gamma < float("inf")):
            found.append(f"train.snr_gamma: must be a finite number > 0 (e.g. 5) or null (off), got {gamma!r}")
        return found


@dataclass
class CheckpointSection:
    """Args: every: optimizer steps between checkpoints; keep: how many checkpoints to keep (oldest deleted)."""

    every: int = 500
    keep: int = 3

    def problems(self) -> list[str]:
        found: list[str] = []
        for name in ("every", "keep"):
            int_at_least(found, f"checkpoint.{name}", getattr(self, name), 1)
        return found


@dataclass
class LoggingSection:
    """Feedback.

    Args:
        every: optimizer steps between log records (tensorboard, train_log.jsonl).
        log_with: "tensorboard" or "none".
        sample_every: optimizer steps between PNG sample grids per task (0: never).
        sample_count: examples per task in a grid.
        sample_steps: DDIM steps of the sampler.
        guidance_scale: text classifier-free guidance of the samples (1: none).
        image_guidance_scale: image guidance of edit/sr/remove samples (InstructPix2Pix; used when
            guidance_scale > 1).
    """

    every: int = 10
    log_with: str = "tensorboard"
    sample_every: int = 0
    sample_count: int = 4
    sample_steps: int = 25
    guidance_scale: float = 1.0
    image_guidance_scale: float = 1.5

    def problems(self) -> list[str]:
        found = []
        for name, low in (("every", 1), ("sample_every", 0), ("sample_count", 1), ("sample_steps", 1)):
            int_at_least(found, f"logging.{name}", getattr(self, name), low)
        choice(found, "logging.log_with", self.log_with, LOG_WITH)
        if self.log_with == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            found.append(
                "logging.log_with: tensorboard is not installed (pip install tensorboard), or set log_with: none"
            )
        for name in ("guidance_scale", "image_guidance_scale"):
            value = getattr(self, name)
            need(found, is_number(value) and value >= 1, f"logging.{name}: must be a number >= 1, got {value!r}")
        return found


SECTIONS = {
    "adapter": AdapterSection,
    "data": DataSection,
    "train": TrainSection,
    "checkpoint": CheckpointSection,
    "logging": LoggingSection,
}
