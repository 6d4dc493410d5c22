"""Fresh Shapes batches drawn on the fly from one seeded generator (rendering 32 scenes takes ~5 ms)."""

from __future__ import annotations

import numpy as np
import torch

from mtu.data.shapes import evaluation_set, render, sample_scene
from mtu.data.shapes.world import caption


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (B, 3, H, W) in [-1, 1], the range the VAE works in."""
    array = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


def sample_batch(
    rng: np.random.Generator, batch_size: int, caption_dropout: float = 0.0
) -> tuple[torch.Tensor, list[str]]:
    """`batch_size` new scenes: images (B, 3, 64, 64) in [-1, 1] and captions.

    A caption is replaced by "" with probability `caption_dropout` (the unconditional input that
    classifier-free guidance and the pipeline's empty negative prompt use).
    """
    images, captions = [], []
    for _ in range(batch_size):
        scene = sample_scene(rng)
        images.append(render(scene))
        text = caption(scene, rng)
        captions.append("" if rng.random() < caption_dropout else text)
    return images_to_tensor(images), captions


def held_out_images(num_scenes: int, seed: int = 0) -> torch.Tensor:
    """Target images of the first `num_scenes` t2i evaluation examples: never drawn by a training stream."""
    return images_to_tensor([example.target for example in evaluation_set("t2i", num_scenes, seed)])
