"""Sample grids during training: the model being trained inside `mtu.pipelines.MTUPipeline`, with DDIM.

One PNG per task: a row per preview example, columns (conditioning image, if any) | sample | target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch

from mtu.sampler import SamplerSettings
from mtu.training.components import Components
from mtu.training.pairs import Pair


def pipeline_for(model, components: Components):
    """An `MTUPipeline` around the live model and the frozen parts (no copies), with a DDIM scheduler."""
    from diffusers import DDIMScheduler

    from mtu.pipelines import MTUPipeline

    encoders = dict(zip(("text_encoder", "text_encoder_2"), components.text_encoders))
    tokenizers = dict(zip(("tokenizer", "tokenizer_2"), components.tokenizers))
    scheduler = DDIMScheduler.from_config(components.scheduler_config)
    pipeline = MTUPipeline(vae=components.vae, unet=model, scheduler=scheduler, **encoders, **tokenizers)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def training_samplers(config, served: list[str]) -> dict[str, SamplerSettings]:
    """Per served task, the sampler of the training samples (DDIM, `logging`'s steps and guidance) and whether the
    task trained with empty prompts (`prompt: false`): stored with the finished model as its defaults
    (`mtu.sampler`). The old tasks of an add-task run keep the settings stored in the folder it extends."""
    from mtu.sampler import load_sampler

    section = config.logging
    sampler = SamplerSettings(
        "DDIMScheduler", section.sample_steps, section.guidance_scale, section.image_guidance_scale
    )
    extended = load_sampler(config.extends) if config.extends else {}
    return {
        name: sampler.replace(empty_prompt=not config.tasks[name].prompt)
        if name in config.tasks
        else extended.get(name, sampler)
        for name in served
    }


def request(pair: Pair, index: int, resolution: int, **sampler):
    """The pipeline request of a preview pair; each example has its own seeded generator."""
    from mtu.pipelines import MTURequest

    image = None if pair.image is None else PIL.Image.fromarray(pair.image)
    mask = None if pair.mask is None else PIL.Image.fromarray(pair.mask * 255)
    generator = torch.Generator().manual_seed(index)
    return MTURequest(
        pair.task,
        pair.text,
        image=image,
        mask_image=mask,
        generator=generator,
        height=resolution,
        width=resolution,
        **sampler,
    )


def task_samples(pipeline, pairs: list[Pair], resolution: int, num_inference_steps: int, **sampler) -> np.ndarray:
    """(N, H, W, 3) float images in [0, 1] for the preview pairs of one task."""
    requests = [request(pair, i, resolution, **sampler) for i, pair in enumerate(pairs)]
    return np.concatenate(pipeline.run_batch(requests, num_inference_steps=num_inference_steps, output_type="np"))


def grid(pairs: list[Pair], outputs: np.ndarray) -> np.ndarray:
    """uint8 image: one row per example, columns (conditioning image, if any) | sample | target."""
    rows = []
    for pair, output in zip(pairs, outputs):
        sample = (np.asarray(output) * 255).round().clip(0, 255).astype(np.uint8)
        shown = pair.image
        if pair.mask is not None:  # inpainting: grey out the hole the model fills
            shown = np.where(pair.mask[..., None] > 0, np.uint8(128), pair.image)
        columns = ([shown] if shown is not None else []) + [sample, pair.target]
        rows.append(np.concatenate(columns, axis=1))
    return np.concatenate(rows, axis=0)


def save_grid(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(image).save(path)
