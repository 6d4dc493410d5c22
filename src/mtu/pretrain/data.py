"""Fresh Shapes batches drawn on the fly; batch `step` of a stage comes from its own seed.

Seeding each batch by (seed, stage, step) makes the data stream independent of who draws it: DataLoader
workers can render batches ahead in parallel (rendering 256 scenes takes ~0.2 s of one CPU core, more
than a GPU step), and a resumed run picks the stream up at its step with nothing to restore.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtu.data.shapes import evaluation_set, render, sample_scene
from mtu.data.shapes.world import caption


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (B, 3, H, W) in [-1, 1], the range the VAE works in."""
    array = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


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


class SceneBatches(Dataset):
    """Item `step` is the training batch of that optimizer step: images (B, 3, 64, 64) and token ids (B, L).

    Args:
        seed, stage_index: with the step, the batch's seed (distinct per stage; the held-out evaluation
            streams use other seeds).
        batch_size, caption_dropout: as in `sample_batch`.
        num_steps: the stage's length (the dataset's length).
        tokenizer: tokenizes the captions in the worker; None gives (B, 0) ids (the VAE stage).
    """

    def __init__(
        self, seed: int, stage_index: int, batch_size: int, num_steps: int, caption_dropout: float = 0.0, tokenizer=None
    ) -> None:
        self.seed, self.stage_index, self.batch_size = seed, stage_index, batch_size
        self.num_steps, self.caption_dropout, self.tokenizer = num_steps, caption_dropout, tokenizer

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.stage_index, step])
        images, captions = sample_batch(rng, self.batch_size, self.caption_dropout)
        if self.tokenizer is None:
            return images, torch.zeros(len(captions), 0, dtype=torch.long)
        ids = self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return images, ids


def step_batches(dataset: SceneBatches, first_step: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """The batches of steps first_step .. len(dataset) - 1, in order, rendered by `workers` processes (0: inline)."""
    return DataLoader(
        dataset,
        batch_size=None,  # each item is already a batch
        sampler=range(first_step, len(dataset)),
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=pin_memory,
    )


def held_out_images(num_scenes: int, seed: int = 0) -> torch.Tensor:
    """Target images of the first `num_scenes` t2i evaluation examples: never drawn by a training stream."""
    return images_to_tensor([example.target for example in evaluation_set("t2i", num_scenes, seed)])
