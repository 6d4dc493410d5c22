"""Write one task of an MTU model as a complete stock diffusers pipeline folder (router folded in)."""

from __future__ import annotations

from pathlib import Path

from diffusers import (
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLInstructPix2PixPipeline,
    StableDiffusionXLPipeline,
)

from mtu.outputs import check_target, write_folder
from mtu.pipelines.pipeline_mtu import MTUPipeline

# conditioning -> (SD 1.x/2.x class, SDXL class) whose input layout the exported UNet has
STOCK_PIPELINES = {
    "none": (StableDiffusionPipeline, StableDiffusionXLPipeline),
    "image": (StableDiffusionInstructPix2PixPipeline, StableDiffusionXLInstructPix2PixPipeline),
    "masked_image": (StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline),
}


def export_pipeline(pipe: MTUPipeline, task: str, out: str | Path, overwrite: bool = False) -> Path:
    """Save `task` as a stock pipeline folder (`model_index.json` names the stock class); returns its path.

    The folder is written next to `out` under a temporary name and renamed, so it is complete or absent.
    An existing non-empty `out` is refused unless `overwrite` (and then only a model folder is replaced).
    """
    check_target(out, overwrite)  # before the export work
    spec = pipe.unet.mtu_config.tasks[pipe.unet.mtu_config.task_index(task)]
    if spec.conditioning not in STOCK_PIPELINES:
        raise ValueError(f"task {task!r} has custom conditioning: no stock pipeline runs it; export the UNet alone")
    stock_class = STOCK_PIPELINES[spec.conditioning][pipe.is_sdxl]
    parts = {name: getattr(pipe, name) for name in ("vae", "text_encoder", "tokenizer", "scheduler")}
    if pipe.is_sdxl:
        parts.update(text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock = stock_class(unet=pipe.unet.export(task), **parts)
    return write_folder(out, stock.save_pretrained, overwrite)
