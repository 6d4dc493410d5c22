"""Write one task of an MTU model as a complete stock diffusers pipeline folder (router folded in)."""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import (
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLInstructPix2PixPipeline,
    StableDiffusionXLPipeline,
)

from mtu.pipelines.pipeline_mtu import MTUPipeline
from mtu.utils.outputs import EXPORT_INDEX_KEY, check_target, write_folder

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
    return write_folder(out, lambda folder: _save_marked(stock, folder, task), overwrite)


def _save_marked(stock, folder: Path, task: str) -> None:
    """Save the stock pipeline, its model_index.json marked as mtu's (`mtu.utils.outputs.EXPORT_INDEX_KEY`): --overwrite
    may replace it later. diffusers skips keys starting with "_" when it loads a pipeline."""
    stock.save_pretrained(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index[EXPORT_INDEX_KEY] = {"task": task}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
