"""The frozen parts of a Stable Diffusion (1.x/2.x or XL) pipeline folder, and how training uses them.

Text: SD encodes with one CLIP (last hidden state); SDXL concatenates both encoders' penultimate
hidden states and adds the second one's pooled embedding and the size/crop `time_ids`.
Images: the target latent is a VAE *sample* (scaled); an "image" conditioning latent is the unscaled
`latent_dist.mode()` and a masked-image latent the scaled mode (`mtu.conditioning` has the layouts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtu.conditioning import conditioning_channels, latent_mask, mask_image
from mtu.hub import is_hub_id
from mtu.loading import resolve_base


@dataclass
class Components:
    """Tokenizers, text encoders, VAE, denoiser and noise schedule of one base model."""

    unet: nn.Module
    vae: nn.Module
    tokenizers: list[Any]
    text_encoders: list[nn.Module]
    scheduler_config: dict
    resolution: int = 64
    xl: bool = False
    _empty: dict = field(default_factory=dict)

    def to(self, device: torch.device, dtype: torch.dtype) -> Components:
        """Move the frozen parts (VAE, text encoders) to `device` in `dtype`; the UNet is left alone."""
        for module in [self.vae, *self.text_encoders]:
            module.to(device)
            if dtype != torch.float32:
                module.to(dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, D) prompt embeddings and, for SDXL, the (B, P) pooled embeddings (else None)."""
        hidden, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            ids = tokenizer(
                texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            if self.xl:
                output = encoder(ids, output_hidden_states=True)
                hidden.append(output.hidden_states[-2])
                pooled = output[0]  # the last encoder's projected pooled embedding
            else:
                hidden.append(encoder(ids)[0])
        return torch.cat(hidden, dim=-1), pooled

    def added_cond_kwargs(self, pooled: torch.Tensor | None) -> dict | None:
        """SDXL's `added_cond_kwargs` for a batch of pooled embeddings; None for SD."""
        if pooled is None:
            return None
        size = self.resolution
        # (original size, crop top-left, target size): training images are resized to the target, uncropped.
        time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=pooled.device, dtype=pooled.dtype)
        return {"text_embeds": pooled, "time_ids": time_ids.repeat(len(pooled), 1)}

    def _scale(self, latents: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE posterior of (B, 3, H, W) images in [-1, 1] (unscaled, float32)."""
        distribution = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        return distribution.mean.float(), distribution.std.float()

    def target_latents(self, mean: torch.Tensor, std: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Scaled VAE samples `mean + std * eps` of a posterior, drawn with the given standard normal `eps`."""
        return self._scale(mean + std * eps.to(mean))

    @torch.no_grad()
    def image_latents(self, images: torch.Tensor, scaled: bool = False) -> torch.Tensor:
        """`latent_dist.mode()` of conditioning images; `scaled` for inpainting's masked-image latents."""
        latents = self.vae.encode(images.to(self.device, self.dtype)).latent_dist.mode()
        return (self._scale(latents) if scaled else latents).float()

    def extra_channels(self, spec) -> int:
        """Channels a task's conditioning adds after the noisy latent (`mtu.conditioning` layouts)."""
        latent = self.vae.config.latent_channels
        return spec.input_channels(latent) - latent

    @torch.no_grad()
    def condition_latents(self, spec, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """A task's conditioning channels in denoiser layout, from (B, 3, H, W) images and (B, 1, H, W) masks.

        The layout is `mtu.conditioning.conditioning_channels`'s, as in `MTUPipeline`; the latents differ
        only where training must be deterministic (the masked image's posterior mode, not a sample).
        """
        if spec.conditioning == "masked_image":
            masks = masks.to(self.device)
            masked = self.image_latents(mask_image(images.to(self.device), masks), scaled=True)
            return conditioning_channels(spec, masked, latent_mask(masks, masked.shape[2:]).float())
        if spec.conditioning == "image":
            return conditioning_channels(spec, self.image_latents(images))
        raise ValueError(f"task {spec.name!r}: conditioning {spec.conditioning!r} has no image latents")

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, H, W) images in [0, 1]."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = latents / self.vae.config.scaling_factor + shift
        return (self.vae.decode(latents.to(self.dtype)).sample.float() / 2 + 0.5).clamp(0, 1)


def _model_index(folder: str) -> dict:
    local = Path(folder) / "model_index.json"
    if local.is_file():
        return json.loads(local.read_text())
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.load_config(folder)


def unet_config(model: str) -> dict:
    """The denoiser's config alone (no weights): what a dry run needs."""
    from diffusers import UNet2DConditionModel

    with _readable(model):
        return UNet2DConditionModel.load_config(resolve_base(model), subfolder="unet")


@contextmanager
def _readable(model: str) -> Iterator[None]:
    """Hub and file errors as one FileNotFoundError naming the model (the CLI prints it on one line)."""
    try:
        yield
    except FileNotFoundError:
        raise  # ours (a shipped model without weights): already says what to do
    except OSError as error:
        hint = " (no network? download it and point `model` at the folder)" if is_hub_id(model) else ""
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(f"cannot load model {model!r}{hint}: {first_line}") from error


def load_components(model: str, resolution: int) -> Components:
    """Load a Stable Diffusion or SDXL pipeline folder's parts (frozen, eval mode), UNet included."""
    with _readable(model):
        return _load_components(resolve_base(model), resolution)


def _load_components(folder: str, resolution: int) -> Components:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    xl = "text_encoder_2" in _model_index(folder)
    tokenizers = [CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")]
    encoders: list[nn.Module] = [CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")]
    if xl:
        tokenizers.append(CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2"))
        encoders.append(CLIPTextModelWithProjection.from_pretrained(folder, subfolder="text_encoder_2"))
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    scheduler_config = dict(DDPMScheduler.load_config(folder, subfolder="scheduler"))
    for module in [vae, *encoders]:
        module.requires_grad_(False).eval()
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    return Components(unet, vae, tokenizers, encoders, scheduler_config, resolution, xl)
