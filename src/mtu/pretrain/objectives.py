"""Losses and measurements of the recipe (no I/O, no training state)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler

from mtu.pretrain.data import sample_batch, tensor_to_uint8


def vae_loss(vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator, kl_weight: float) -> dict:
    """MSE + L1 reconstruction of a posterior sample, plus `kl_weight` x the mean KL per latent element."""
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.sample(generator=generator)).sample
    mse = F.mse_loss(reconstruction, images)
    l1 = F.l1_loss(reconstruction, images)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return {"loss": mse + l1 + kl_weight * kl, "mse": mse, "kl": kl}


@torch.no_grad()
def vae_reconstructions(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 50) -> np.ndarray:
    """uint8 (N, H, W, 3) encode (posterior mean) -> decode of `images` (N, 3, H, W) in [-1, 1]."""
    device = next(vae.parameters()).device
    decoded = [vae.decode(vae.encode(batch.to(device)).latent_dist.mode()).sample for batch in images.split(batch_size)]
    return np.concatenate([tensor_to_uint8(batch) for batch in decoded])


def psnr_uint8(images: np.ndarray, references: np.ndarray) -> float:
    """Mean over images of the PSNR (dB) between uint8 (N, H, W, 3) arrays."""
    error = images.astype(np.float64) - references.astype(np.float64)
    mse = np.maximum((error**2).mean(axis=(1, 2, 3)), 1e-10)
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


def vae_psnr(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 50) -> float:
    """Mean PSNR (dB, uint8 pixels) of encode (posterior mean) -> decode over `images` in [-1, 1]."""
    return psnr_uint8(vae_reconstructions(vae, images, batch_size), tensor_to_uint8(images))


@torch.no_grad()
def latent_scaling_factor(
    vae: AutoencoderKL, rng: np.random.Generator, generator: torch.Generator, num_scenes: int = 512
) -> float:
    """1 / std of posterior samples of fresh scenes: makes the latents the diffusion sees unit-variance."""
    images, _ = sample_batch(rng, num_scenes)
    device = next(vae.parameters()).device
    latents = torch.cat([vae.encode(b.to(device)).latent_dist.sample(generator=generator) for b in images.split(64)])
    return float(1.0 / latents.std())


def snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample weights of the v-prediction loss that cap the x0-space weight (snr + 1) at gamma + 1.

    This is min-SNR-gamma's point (stop the many easy low-noise steps from dominating) without the
    usual v-prediction form min(snr, gamma) / (snr + 1), which also drives the weight of the
    high-noise steps to 0, the steps where the layout (object positions) is decided.
    """
    if gamma <= 0:
        return torch.ones(timesteps.shape)
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]  # add_noise may have moved it
    snr = alphas / (1 - alphas)
    return ((gamma + 1) / (snr + 1)).clamp(max=1.0)


def diffusion_loss(unet, text_encoder, latents, input_ids, scheduler: DDPMScheduler, generator, gamma: float):
    """Weighted v-prediction MSE for latents (B, 4, 16, 16) (already scaled) and token ids (B, L)."""
    # Drawn on the CPU from the CPU generator: the same noise on every device.
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    weights = snr_weights(scheduler, timesteps, gamma).to(latents.device)
    timesteps = timesteps.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, text_encoder(input_ids)[0]).sample
    per_sample = F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()
