"""One task as a single-file checkpoint: the original Stable Diffusion (LDM) key layout in one .safetensors.

That is the file ComfyUI and AUTOMATIC1111 load: UNet under `model.diffusion_model.`, VAE under
`first_stage_model.`, CLIP text encoder under `cond_stage_model.transformer.`. The installed diffusers
converts this layout to its own (`from_single_file`, in `diffusers.loaders.single_file_utils`) but has no
converter the other way, so the renaming rules below invert diffusers' own, and every export is checked
against diffusers' converters before the file is written: converted back, it must give exactly the
diffusers weights, key for key, or the export fails.

Covered: SD 1.x layouts (CLIP text encoder; 4-, 8- and 9-channel UNets: t2i, InstructPix2Pix and
inpainting layouts). SD 2.x (OpenCLIP text encoder) and SDXL are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from mtu.deploy.files import EXPORT_KEY, check_file_target
from mtu.utils.tensor_files import save_tensors

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def export_single_file(pipe: Any, task: str, out: str | Path, overwrite: bool = False) -> Path:
    """Write `task` of an `MTUPipeline` as one .safetensors file in the original SD layout; returns its path."""
    out = check_file_target(out, overwrite)
    if pipe.is_sdxl:
        raise ValueError("single-file export covers SD 1.x layouts; SDXL is not supported yet")
    if getattr(pipe.text_encoder.config, "hidden_act", None) == "gelu":
        raise ValueError(
            "single-file export covers SD 1.x layouts; this text encoder is SD 2.x's OpenCLIP, whose "
            "original layout is not supported yet"
        )
    state = to_original_layout(pipe.unet.export(task), pipe.vae, pipe.text_encoder)
    save_tensors(out, state, {"format": "pt", EXPORT_KEY: task})
    return out


@torch.no_grad()
def to_original_layout(
    unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The three models' weights under their original SD names, checked against diffusers' own converters."""
    unet_state, vae_state, text_state = unet.state_dict(), vae.state_dict(), text_encoder.state_dict()
    unet_names = unet_key_map(unet.config, list(unet_state))
    vae_names = vae_key_map(vae.config, list(vae_state))
    state = {UNET_PREFIX + unet_names[key]: value for key, value in unet_state.items()}
    state.update({VAE_PREFIX + vae_names[key]: _vae_value(key, value) for key, value in vae_state.items()})
    state.update({TEXT_PREFIX + text_key(key): value for key, value in text_state.items()})
    check_against_diffusers(state, unet, vae, text_state)
    return state


def unet_key_map(config: Any, keys: list[str]) -> dict[str, str]:
    """diffusers UNet2DConditionModel key -> LDM key (without the `model.diffusion_model.` prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["class_embed_type"])
    if config.get("addition_embed_type") == "text_time":
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"])
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError(f"single-file export needs one layers_per_block for every block, got {layers}")
    with_attention = {int(key.split(".")[1]) for key in keys if re.match(r"up_blocks\.\d+\.attentions\.", key)}
    return {key: fixed.get(key) or _unet_block_key(key, layers + 1, with_attention) for key in keys}


def _unet_block_key(key: str, per_block: int, up_with_attention: set[int]) -> str:
    """LDM name of a key inside the UNet's down / mid / up blocks (the inverse of convert_ldm_unet_checkpoint)."""
    parts = key.split(".")
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "resnets":
            return ".".join(["middle_block", str(2 * index), *_renamed(rest, UNET_RESNET)])
        return ".".join(["middle_block", "1", *rest])
    if parts[0] not in ("down_blocks", "up_blocks"):
        raise ValueError(f"UNet weight {key} has no place in the original SD layout")
    down = parts[0] == "down_blocks"
    block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
    first = 1 + block * per_block if down else block * per_block
    name = "input_blocks" if down else "output_blocks"
    if kind == "resnets":
        return ".".join([name, str(first + index), "0", *_renamed(rest, UNET_RESNET)])
    if kind == "attentions":
        return ".".join([name, str(first + index), "1", *rest])
    if kind == "downsamplers":
        return ".".join([name, str(first + per_block - 1), "0", "op", *rest[1:]])  # rest: conv.weight
    if kind == "upsamplers":
        slot = "2" if block in up_with_attention else "1"  # after the attention, when the block has one
        return ".".join([name, str(first + per_block - 1), slot, *rest])
    raise ValueError(f"UNet weight {key} has no place in the original SD layout")


def vae_key_map(config: Any, keys: list[str]) -> dict[str, str]:
    """diffusers AutoencoderKL key -> LDM key (without the `first_stage_model.` prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    blocks = len(config["up_block_types"])
    return {key: fixed.get(key) or _vae_block_key(key, blocks) for key in keys}


def _vae_block_key(key: str, up_blocks: int) -> str:
    """The inverse of convert_ldm_vae_checkpoint inside the encoder / decoder blocks."""
    coder, parts = key.split(".")[0], key.split(".")[1:]
    shortcut = {"conv_shortcut": "nin_shortcut"}
    if parts[0] == "mid_block" and parts[1] == "resnets":
        return ".".join([coder, "mid", f"block_{int(parts[2]) + 1}", *_renamed(parts[3:], shortcut)])
    if parts[0] == "mid_block" and parts[1] == "attentions":
        return ".".join([coder, "mid", "attn_1", *_renamed(parts[3:], VAE_ATTENTION)])
    if parts[0] in ("down_blocks", "up_blocks"):
        down = parts[0] == "down_blocks"
        block = int(parts[1]) if down else up_blocks - 1 - int(parts[1])  # LDM counts decoder blocks from the bottom
        prefix = [coder, "down" if down else "up", str(block)]
        if parts[2] == "resnets":
            return ".".join([*prefix, "block", parts[3], *_renamed(parts[4:], shortcut)])
        if parts[2] in ("downsamplers", "upsamplers"):
            return ".".join([*prefix, "downsample" if down else "upsample", *parts[4:]])
    raise ValueError(f"VAE weight {key} has no place in the original SD layout")


def _renamed(rest: list[str], names: dict[str, str]) -> list[str]:
    """Rename the leading layer of `rest` (one or two name parts, e.g. `to_out.0`) by `names`."""
    for size in (2, 1):
        head = ".".join(rest[:size])
        if head in names:
            return [*names[head].split("."), *rest[size:]]
    return rest


def _vae_value(key: str, value: torch.Tensor) -> torch.Tensor:
    """The VAE's mid attention projections are 1x1 convs in the original layout, Linears in diffusers."""
    if ".mid_block.attentions." in key and key.endswith(".weight") and value.dim() == 2:
        return value[:, :, None, None]
    return value


def text_key(key: str) -> str:
    """CLIPTextModel key -> original name: transformers >= 5.6 dropped the `text_model.` level the original has."""
    return key if key.startswith("text_model.") or key.startswith("text_projection") else f"text_model.{key}"


def check_against_diffusers(state: dict, unet: torch.nn.Module, vae: torch.nn.Module, text_state: dict) -> None:
    """Convert `state` back with diffusers' from_single_file converters; it must give every weight unchanged."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    text = {
        key.removeprefix("text_model.") if key not in text_state else key: value
        for key, value in convert_ldm_clip_checkpoint(state).items()
    }
    for part, back, expected in (
        ("UNet", convert_ldm_unet_checkpoint(state, unet.config), unet.state_dict()),
        ("VAE", convert_ldm_vae_checkpoint(state, vae.config), vae.state_dict()),
        ("text encoder", text, text_state),
    ):
        wrong = sorted(set(back) ^ set(expected)) or [k for k in expected if not torch.equal(back[k], expected[k])]
        if wrong:
            raise ValueError(
                f"single-file export: diffusers reads the {part} back wrong at {wrong[:3]} "
                f"({len(wrong)} keys); this diffusers version changed its layout rules"
            )
