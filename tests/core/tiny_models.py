"""Tiny denoisers of every supported layout, built in code (no downloads), with matching inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import PixArtTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
from torch import nn


def tiny_sd_unet(cross_attention_dim: int = 16) -> UNet2DConditionModel:
    """SD 1.x/2.x layout: cross-attention down/up blocks, GEGLU FFNs (inner = 4 x channels)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def tiny_sdxl_unet(cross_attention_dim: int = 16, pooled_dim: int = 8) -> UNet2DConditionModel:
    """SDXL layout: text_time added conditioning, several transformer layers per block."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=pooled_dim + 6 * 4,
    ).eval()


def tiny_pixart() -> PixArtTransformer2DModel:
    torch.manual_seed(0)
    return PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=4,
        num_attention_heads=2,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=8,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        use_additional_conditions=False,
        caption_channels=None,
    ).eval()


def tiny_sd3() -> SD3Transformer2DModel:
    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
    ).eval()


def _unet_inputs(sample: torch.Tensor, generator: torch.Generator) -> tuple[tuple, dict]:
    batch = sample.shape[0]
    timestep = torch.randint(0, 1000, (batch,), generator=generator)
    text = torch.randn(batch, 5, 16, generator=generator)
    return (sample, timestep, text), {}


def _sdxl_inputs(sample: torch.Tensor, generator: torch.Generator) -> tuple[tuple, dict]:
    args, _ = _unet_inputs(sample, generator)
    batch = sample.shape[0]
    added = {
        "text_embeds": torch.randn(batch, 8, generator=generator),
        "time_ids": torch.rand(batch, 6, generator=generator),
    }
    return args, {"added_cond_kwargs": added}


def _pixart_inputs(sample: torch.Tensor, generator: torch.Generator) -> tuple[tuple, dict]:
    batch = sample.shape[0]
    return (), {
        "hidden_states": sample,
        "encoder_hidden_states": torch.randn(batch, 6, 8, generator=generator),
        "timestep": torch.randint(0, 1000, (batch,), generator=generator),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }


def _sd3_inputs(sample: torch.Tensor, generator: torch.Generator) -> tuple[tuple, dict]:
    batch = sample.shape[0]
    return (), {
        "hidden_states": sample,
        "encoder_hidden_states": torch.randn(batch, 6, 16, generator=generator),
        "pooled_projections": torch.randn(batch, 8, generator=generator),
        "timestep": torch.randint(0, 1000, (batch,), generator=generator),
    }


@dataclass
class Case:
    """A denoiser layout under test: how to build it and how to make inputs around a given sample."""

    name: str
    build: Callable[[], nn.Module]
    make_inputs: Callable[[torch.Tensor, torch.Generator], tuple[tuple, dict[str, Any]]]
    has_task_norms: bool

    def inputs(self, sample: torch.Tensor, seed: int = 0) -> tuple[tuple, dict[str, Any]]:
        return self.make_inputs(sample, torch.Generator().manual_seed(seed))


CASES = [
    Case("sd-unet", tiny_sd_unet, _unet_inputs, has_task_norms=True),
    Case("sdxl-unet", tiny_sdxl_unet, _sdxl_inputs, has_task_norms=True),
    Case("pixart", tiny_pixart, _pixart_inputs, has_task_norms=False),
    Case("sd3", tiny_sd3, _sd3_inputs, has_task_norms=False),
]


def output_of(result: Any) -> torch.Tensor:
    return result.sample if hasattr(result, "sample") else result[0]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()
