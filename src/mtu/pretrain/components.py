"""Sizes and builders of the shapes-base components: stock diffusers / transformers classes only.

The pipeline folder these make is loaded by a stock ``StableDiffusionPipeline.from_pretrained``:
a `CLIPTextModel`, an `AutoencoderKL` (64x64x3 <-> 16x16x4), a `UNet2DConditionModel` whose every level
has cross-attention `BasicTransformerBlock`s with GEGLU feed-forwards (the FFNs MTU upcycles), and a
v-prediction cosine-schedule scheduler (DDPM for training, DDIM for sampling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mtu.utils.modules import count_parameters  # noqa: F401 - the recipe names it from here

LATENT_CHANNELS = 4
# Each GEGLU inner dim (4 x channels) must split into this many experts when upcycled.
FFN_DIVISOR = 16


@dataclass(frozen=True)
class ModelSizes:
    """Widths and depths of the three networks (defaults: the shipped model)."""

    text_width: int = 128  # CLIP hidden size, also the UNet's cross_attention_dim
    text_layers: int = 4  # CLIP transformer layers (causal, as in CLIP)
    text_heads: int = 4
    max_length: int = 40  # tokens incl. start/end; the longest 3-object caption has 33
    vae_channels: tuple[int, ...] = (32, 64, 64)  # one block per entry; len - 1 downsamples (64 -> 16)
    vae_groups: int = 8  # GroupNorm groups in the VAE
    unet_channels: tuple[int, ...] = (32, 64, 96, 128)  # one cross-attention block per level (16, 8, 4, 2 px)
    unet_layers: int = 1  # resnet + transformer pairs per down block (up blocks get one more)
    unet_head_dim: int = 16  # attention head width; heads per level = channels // unet_head_dim
    unet_groups: int = 8  # GroupNorm groups in the UNet

    def __post_init__(self) -> None:
        if len(self.vae_channels) != 3:
            raise ValueError(
                f"vae_channels must have 3 entries (64x64 -> 16x16 latent is 2 downsamples), got {self.vae_channels}"
            )
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        for channels in self.unet_channels:
            if channels % self.unet_head_dim or channels % self.unet_groups or (4 * channels) % FFN_DIVISOR:
                raise ValueError(
                    f"UNet channels {channels} must be divisible by unet_head_dim ({self.unet_head_dim}) and "
                    f"unet_groups ({self.unet_groups}), and 4x channels by {FFN_DIVISOR} (GEGLU experts); "
                    f"got unet_channels={self.unet_channels}"
                )
        if any(c % self.vae_groups for c in self.vae_channels):
            raise ValueError(f"vae_channels {self.vae_channels} must be divisible by vae_groups {self.vae_groups}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelSizes:
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown ModelSizes keys {unknown}; valid keys: {sorted(cls.__dataclass_fields__)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# Test-sized networks: the same structure, seconds to train.
TINY_SIZES = ModelSizes(
    text_width=32,
    text_layers=1,
    text_heads=2,
    vae_channels=(8, 8, 8),
    vae_groups=4,
    unet_channels=(8, 16),
    unet_head_dim=8,
    unet_groups=4,
)


def build_text_encoder(sizes: ModelSizes, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes.text_width,
        intermediate_size=4 * sizes.text_width,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        max_position_embeddings=sizes.max_length,
        projection_dim=sizes.text_width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_vae(sizes: ModelSizes) -> AutoencoderKL:
    blocks = len(sizes.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=sizes.vae_channels,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=sizes.vae_groups,
        sample_size=64,
        # Flat-colour scenes need no global attention to reconstruct; it would cost a quarter of the encoder.
        mid_block_add_attention=False,
    )


def build_unet(sizes: ModelSizes) -> UNet2DConditionModel:
    levels = len(sizes.unet_channels)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=sizes.unet_channels,
        # Cross-attention at every level, the 16x16 one included: reading position words needs it.
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        layers_per_block=sizes.unet_layers,
        cross_attention_dim=sizes.text_width,
        # diffusers' historical name: this is the number of heads per level, not their width.
        attention_head_dim=tuple(c // sizes.unet_head_dim for c in sizes.unet_channels),
        norm_num_groups=sizes.unet_groups,
    )


def build_train_scheduler() -> DDPMScheduler:
    """Cosine ("squaredcos_cap_v2") betas with v-prediction: the noise process the UNet is trained on."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )


def build_sample_scheduler() -> DDIMScheduler:
    """DDIM on the training betas; "trailing" spacing starts sampling at t=999, the pure-noise end."""
    return DDIMScheduler.from_config(
        build_train_scheduler().config,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
        # Unused by "trailing"; 1 keeps StableDiffusionPipeline from flagging the config as outdated.
        steps_offset=1,
    )
