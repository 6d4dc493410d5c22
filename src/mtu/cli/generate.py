"""`mtu generate`: run any task of an MTU model on files; writes PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

import PIL.Image


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="run a task of an MTU model and write PNGs")
    parser.add_argument("--model", required=True, help="MTU folder (from `mtu upcycle` or `mtu train`)")
    parser.add_argument("--base", default=None, help="base model (default: the one named in the MTU folder)")
    parser.add_argument("--task", required=True, help="t2i, edit, sr, remove, inpaint, ...")
    parser.add_argument("--prompt", default="", help="caption or instruction")
    parser.add_argument("--image", type=Path, default=None, help="input image file (image tasks)")
    parser.add_argument("--mask", type=Path, default=None, help="mask image file (inpaint): white = fill")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    parser.add_argument("--guidance", type=float, default=1.0, help="text guidance scale (default 1: off)")
    parser.add_argument("--image-guidance", type=float, default=1.5, help="image guidance for edit/sr/remove")
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the PNGs (default outputs/)")
    parser.set_defaults(func=run)


def _open_image(path: Path | None, mode: str) -> PIL.Image.Image | None:
    if path is None:
        return None
    try:
        return PIL.Image.open(path).convert(mode)
    except (OSError, PIL.UnidentifiedImageError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def run(args: argparse.Namespace) -> None:
    import torch

    from mtu.pipelines import MTUPipeline

    image, mask = _open_image(args.image, "RGB"), _open_image(args.mask, "L")
    pipe = MTUPipeline.from_mtu(args.model, base=args.base)
    result = pipe(
        args.task,
        args.prompt,
        image=image,
        mask_image=mask,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        image_guidance_scale=args.image_guidance,
        num_images_per_prompt=args.num_images,
        generator=torch.Generator().manual_seed(args.seed),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for index, picture in enumerate(result.images):
        path = args.out / f"{args.task}-{args.seed}-{index}.png"
        picture.save(path)
        print(path)
