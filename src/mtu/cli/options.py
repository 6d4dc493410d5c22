"""Options several commands share: the sampler settings (`--steps`, `--guidance`, `--image-guidance`).

Standard library and `mtu.utils.limits` only: `mtu --help` builds every parser without loading torch.
"""

from __future__ import annotations

import argparse

from mtu.utils.limits import PIPELINE_NAMES, check_settings, setting_range


def add_sampler_options(parser: argparse.ArgumentParser, steps: str, guidance: str) -> None:
    """Add `--steps`, `--guidance` and `--image-guidance`, each None unless given (then a model's stored sampler,
    `mtu.sampler`, else the command's own default applies).

    Args:
        steps, guidance: the command's defaults in words, for --help ("25", "shapes 1, folder 7.5").
    """
    stored = "default: the model's stored sampler, else"
    parser.add_argument(
        "--steps", type=int, default=None, help=f"denoising steps, {setting_range('steps')} ({stored} {steps})"
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help=f"text guidance, {setting_range('guidance')}; off at <= 1 ({stored} {guidance})",
    )
    parser.add_argument(
        "--image-guidance",
        type=float,
        default=None,
        help=f"image guidance of edit/sr/remove, {setting_range('image_guidance')} ({stored} 1.5)",
    )


def sampler_options(args: argparse.Namespace) -> dict:
    """The sampler options as checked (`check_settings`), under the pipeline's names (`num_inference_steps`,
    `guidance_scale`, `image_guidance_scale`); None where the option was not given."""
    checked = check_settings(steps=args.steps, guidance=args.guidance, image_guidance=args.image_guidance)
    return {PIPELINE_NAMES[key]: value for key, value in checked.items()}
