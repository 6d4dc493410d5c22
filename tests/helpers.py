"""Tiny Stable Diffusion components built in code (no downloads), shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from tests.core.tiny_models import tiny_sd_unet, tiny_sdxl_unet


def tiny_tokenizer(folder: Path, model_max_length: int = 16) -> CLIPTokenizer:
    """A character-level CLIP BPE vocabulary: every word splits into letters, no merges needed."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [",", "."]
    tokens = letters + [f"{letter}</w>" for letter in letters] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=model_max_length)


def tiny_text_encoder(vocab_size: int, hidden_size: int = 16, projection: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        projection_dim=hidden_size,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_vae() -> AutoencoderKL:
    """16x16 images <-> 8x8x4 latents (downsampling factor 2)."""
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()


def tiny_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1)


def tiny_sd_components(folder: Path) -> dict:
    """Components of a tiny SD 1.x-layout pipeline (tokenizer files are written under `folder`)."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-files")
    unet = tiny_sd_unet()
    return {
        "vae": tiny_vae(),
        "text_encoder": tiny_text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": tiny_scheduler(),
    }


def tiny_sdxl_components(folder: Path) -> dict:
    """Components of a tiny SDXL-layout pipeline: two text encoders, text_time added conditioning."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-files")
    unet = tiny_sdxl_unet(cross_attention_dim=32, pooled_dim=16)  # 16 + 16 from the two text encoders
    return {
        "vae": tiny_vae(),
        "text_encoder": tiny_text_encoder(len(tokenizer), seed=0),
        "tokenizer": tokenizer,
        "text_encoder_2": tiny_text_encoder(len(tokenizer), projection=True, seed=1),
        "tokenizer_2": tokenizer,
        "unet": unet,
        "scheduler": tiny_scheduler(),
    }


def save_tiny_sd_pipeline(folder: Path) -> Path:
    """A stock StableDiffusionPipeline folder of tiny random components; returns its path."""
    pipeline = StableDiffusionPipeline(
        **tiny_sd_components(folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"
