"""`mtu demo`: upcycle a small SD-style UNet, check the invariants, print the parameter report."""

from __future__ import annotations

import argparse

from mtu.config import MTUConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="upcycle a small UNet and print what MTU adds")
    experts = MTUConfig.default("num_experts")
    parser.add_argument("--experts", type=int, default=experts, help=f"experts per FFN (default {experts})")
    parser.set_defaults(func=run)


def small_unet():
    """A seeded tiny UNet2DConditionModel (torch and diffusers are imported here: `mtu --help` skips them)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()


def run(args: argparse.Namespace) -> None:
    import torch

    import mtu
    from mtu.utils.modules import count_parameters

    with torch.no_grad():
        base = small_unet()
        latent, timestep, text = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 7, 32)
        expected = base(latent, timestep, text).sample
        model = mtu.upcycle(small_unet(), mtu.MTUConfig(num_experts=args.experts))
        print(f"Upcycled a {count_parameters(base):,}-parameter UNet into tasks {model.task_names}\n")
        print(model.parameter_report(), "\n")
        for task in model.task_names:
            extra = torch.randn(1, model.task_in_channels(task) - 4, 16, 16)
            output = model(torch.cat([latent, extra], dim=1), timestep, text, task=task).sample
            error = ((output - expected).norm() / expected.norm()).item()
            print(
                f"{task:<8} input channels {model.task_in_channels(task)}, relative error vs base at init: {error:.1e}"
            )
