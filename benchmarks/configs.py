"""Published denoiser configs, instantiated with random weights (nothing is downloaded)."""

from __future__ import annotations

import copy
import functools

import torch
from diffusers import UNet2DConditionModel
from torch import nn

import mtu
from mtu.layers import MTUFeedForward

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

# An SD-layout UNet small enough for `--quick` (milliseconds per forward); not a published model.
TINY_UNET = {
    "attention_head_dim": 8,
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 16,
}

CONFIGS = {"sd15": SD15_UNET, "sdxl": SDXL_UNET, "tiny": TINY_UNET}


def build_unet(name: str, device: str = "cpu", seed: int = 0) -> UNet2DConditionModel:
    """A full-size UNet of a published config; device="meta" allocates nothing (for counting)."""
    torch.manual_seed(seed)
    with torch.device(device):
        return UNet2DConditionModel(**CONFIGS[name]).eval()


@functools.lru_cache(maxsize=1)
def base_unet(name: str) -> UNet2DConditionModel:
    """The base UNet shared by the sections of one run (one at a time: a full SD1.5 is ~3.4 GB in fp32).

    Sections never modify it: they upcycle a weight-sharing copy (`upcycled`).
    """
    return build_unet(name)


def unet_name(quick: bool) -> str:
    """SD1.5 for the real figures, the tiny SD-layout UNet for `--quick`."""
    return "tiny" if quick else "sd15"


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


def shared_copy(module: nn.Module) -> nn.Module:
    """A structural copy of `module` that shares its parameters and buffers (no weight memory).

    Upcycling the copy leaves `module` usable as the base model; both see the same pre-trained weights
    (and the same `requires_grad` flags, which upcycling clears: use both for inference only).
    """
    memo = {id(tensor): tensor for tensor in [*module.parameters(), *module.buffers()]}
    return copy.deepcopy(module, memo)


def upcycled(base: nn.Module, tasks: list, num_experts: int = 4, seed: int = 0) -> mtu.MTUModel:
    """An MTU model over a weight-sharing copy of `base`, its routers and task embeddings moved off their
    initial values (as after training) so that every task routes differently."""
    model = mtu.upcycle(shared_copy(base), mtu.MTUConfig(tasks=tasks, num_experts=num_experts))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embeddings = model.embedding_list()
        table = torch.randn(len(embeddings), *embeddings[0].shape, generator=generator)  # one draw, as before
        for embedding, row in zip(embeddings, table):
            embedding.copy_(row)
        for module in model.modules():
            if isinstance(module, MTUFeedForward):
                weight = module.router.net[-1].weight
                weight.copy_(0.1 * torch.randn(weight.shape, generator=generator).to(weight.device))
    return model.eval()
