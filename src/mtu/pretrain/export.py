"""Write shapes-base weights as a stock diffusers Stable Diffusion folder, atomically, with its model card."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from mtu.data.shapes import vocabulary
from mtu.pretrain.card import render_card
from mtu.pretrain.components import build_sample_scheduler, count_parameters
from mtu.pretrain.tokenizer import save_tokenizer
from mtu.utils.outputs import replace_folder

INFO_FILE = "pretrain_info.json"


def _folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def export_pipeline(
    dest: str | Path,
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    vae: AutoencoderKL,
    unet: UNet2DConditionModel,
    progress: dict,
) -> Path:
    """Save the components as a Stable Diffusion folder at `dest`, replacing what is there.

    The folder is built next to `dest` and renamed into place, so readers never see a partial folder.

    Args:
        dest: the output folder, e.g. ``src/mtu/assets/shapes-base``.
        tokenizer, text_encoder, vae, unet: the weights to ship (pass EMA weights where there are any).
        progress: training facts for the card: ``config`` (`PretrainConfig.to_dict()`), ``vae_step``,
            ``unet_step``, ``vae_seconds_per_step``, ``unet_seconds_per_step``, ``vae_psnr_db``, ``eval_scenes``.

    Returns:
        `dest` as a Path.
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer(tokenizer, tmp / "tokenizer")
    parameters = {"text_encoder": count_parameters(text_encoder), "vae": count_parameters(vae)}
    parameters["unet"] = count_parameters(unet)
    parameters["total"] = sum(parameters.values())
    info = {
        **progress,
        "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "parameters": parameters,
        "scaling_factor": float(vae.config.scaling_factor),
        "vocab_size": len(tokenizer),
        "vocabulary_words": len(vocabulary()),
        "folder_megabytes": _folder_megabytes(tmp),
    }
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    (tmp / "README.md").write_text(render_card(info))
    dest.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(tmp, dest)
    return dest
