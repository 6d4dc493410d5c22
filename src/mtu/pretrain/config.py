"""`PretrainConfig`: every setting of the shapes-base recipe (saved with the run, reused on resume)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from mtu.pretrain.components import ModelSizes
from mtu.utils.outputs import write_text_atomic

RUN_CONFIG_FILE = "run_config.json"


@dataclass(frozen=True)
class PretrainConfig:
    """The recipe's settings; defaults are the shipped model's.

    Stage 1 trains the VAE alone; stage 2 freezes it and trains text encoder + UNet jointly.
    """

    vae_steps: int = 4000  # stage-1 optimizer steps
    unet_steps: int = 1661  # stage-2 optimizer steps (the learning rate decays over exactly these)
    vae_batch_size: int = 16
    batch_size: int = 256  # stage 2
    vae_lr: float = 5e-4  # peak learning rate, stage 1
    lr: float = 1e-3  # peak learning rate, stage 2
    vae_warmup_steps: int = 100
    warmup_steps: int = 500
    final_lr_fraction: float = 0.05  # cosine decay ends at this fraction of the peak
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm in stage 2 (0 disables clipping)
    kl_weight: float = 1e-5  # on the mean KL per latent element; keeps the latent scale tame
    caption_dropout: float = 0.1  # fraction of empty captions: the unconditional branch of guidance
    min_snr_gamma: float = 5.0  # min-SNR loss weighting (Hang et al. 2023); 0 disables it
    ema_decay: float = 0.999  # EMA of text encoder + UNet weights; the EMA weights are exported
    seed: int = 0  # seeds weight init, the data stream and the noise
    checkpoint_every: int = 250
    export_every: int = 1000  # stage-2 steps between exports (when an export folder is given)
    eval_scenes: int = 500  # held-out scenes for the VAE PSNR
    sizes: ModelSizes = field(default_factory=ModelSizes)

    def __post_init__(self) -> None:
        for name in ("vae_steps", "unet_steps", "vae_warmup_steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("vae_batch_size", "batch_size", "checkpoint_every", "export_every", "eval_scenes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["sizes"] = self.sizes.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown PretrainConfig keys {unknown}; valid keys: {sorted(names)}")
        values = dict(values)
        if "sizes" in values:
            values["sizes"] = ModelSizes.from_dict(values["sizes"])
        return cls(**values)

    def with_overrides(self, overrides: dict) -> PretrainConfig:
        """A copy with `overrides` applied; None values mean "keep"."""
        kept = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **kept) if kept else self


def save_run_config(out: Path, config: PretrainConfig) -> None:
    write_text_atomic(out / RUN_CONFIG_FILE, json.dumps(config.to_dict(), indent=1) + "\n")


def load_run_config(out: Path) -> PretrainConfig:
    path = out / RUN_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} is not a pretrain-shapes run folder")
    return PretrainConfig.from_dict(json.loads(path.read_text()))
