"""Published denoiser configs, instantiated with random weights (nothing is downloaded)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

# runwayml/stable-diffusion-v1-5, unet/config.json (the fields that differ from diffusers' defaults)
SD15_UNET = {
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 2,
    "sample_size": 64,
}

# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
SDXL_UNET = {
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
}

CONFIGS = {"sd15": SD15_UNET, "sdxl": SDXL_UNET}


def build_unet(name: str, device: str = "cpu", seed: int = 0) -> UNet2DConditionModel:
    """A full-size UNet of a published config; device="meta" allocates nothing (for counting)."""
    torch.manual_seed(seed)
    with torch.device(device):
        return UNet2DConditionModel(**CONFIGS[name]).eval()


def unet_inputs(name: str, batch: int, latent_size: int, seed: int = 0) -> tuple[tuple, dict]:
    """Random denoiser inputs (noisy latent, timestep, text states, SDXL's added conditioning)."""
    generator = torch.Generator().manual_seed(seed)
    config = CONFIGS[name]
    latent = torch.randn(batch, 4, latent_size, latent_size, generator=generator)
    text = torch.randn(batch, 77, config["cross_attention_dim"], generator=generator)
    kwargs = {}
    if config.get("addition_embed_type") == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, 1280, generator=generator),
            "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]).repeat(batch, 1),
        }
    return (latent, torch.full((batch,), 500), text), kwargs
