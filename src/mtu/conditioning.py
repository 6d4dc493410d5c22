"""How each task's conditioning is laid out after the noisy latent: one place for training and pipelines.

Layouts follow the stock pipelines the exports run in:
- "image" (edit, sr, remove): InstructPix2Pix: [noisy latent, image latent]; the image latent is
  `vae.encode(image).latent_dist.mode()`, *not* multiplied by the VAE scaling factor.
- "masked_image" (inpaint): SD inpainting: [noisy latent, mask, masked-image latent]; the mask is 1 where
  pixels are to be generated, resized to the latent size; the masked-image latent *is* scaled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtu.config import TaskSpec


def mask_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the pixels to be inpainted: (B, 3, H, W) in [-1, 1] and a (B, 1, H, W) mask, 1 = fill."""
    return image * (mask < 0.5)


def latent_mask(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) pixel mask -> (B, 1, h, w), as StableDiffusionInpaintPipeline resizes it."""
    return F.interpolate(mask, size=latent_size)


def conditioning_channels(
    task: TaskSpec, image_latents: torch.Tensor | None, mask: torch.Tensor | None = None
) -> torch.Tensor | None:
    """A task's conditioning channels in its stock-pipeline order: what follows the noisy latent.

    The one place the layout is decided: `MTUPipeline` and the trainer both build their inputs with it.

    Args:
        task: the task's spec (its `conditioning` decides the layout).
        image_latents: (B, C, h, w) image latents ("image"), masked-image latents ("masked_image"), or the
            raw extra channels of a "custom" task; ignored for "none".
        mask: (B, 1, h, w) latent-sized mask, for "masked_image".

    Returns:
        (B, E, h, w) channels, E = `task.input_channels(C) - C`; None for "none".
    """
    if task.conditioning == "none":
        return None
    if image_latents is None:
        raise ValueError(f"task {task.name!r} ({task.conditioning}) needs condition latents")
    if task.conditioning in ("image", "custom"):
        return image_latents
    if task.conditioning == "masked_image":
        if mask is None:
            raise ValueError(f"task {task.name!r} needs a mask")
        return torch.cat([mask, image_latents], dim=1)
    raise ValueError(f"task {task.name!r}: unknown conditioning {task.conditioning!r}")


def denoiser_input(task: TaskSpec, latents: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
    """The noisy latents (B, C, h, w) followed by a task's `conditioning_channels` (B, E, h, w)."""
    if task.conditioning == "none":
        return latents
    if condition is None:
        raise ValueError(f"task {task.name!r} ({task.conditioning}) needs its conditioning channels")
    return torch.cat([latents, condition], dim=1)
