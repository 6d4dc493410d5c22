"""`mtu generate`: run any task of an MTU model on files; writes PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtu.cli.options import add_sampler_options, sampler_options
from mtu.utils.devices import add_options
from mtu.utils.limits import setting_range
from mtu.utils.outputs import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="run a task of an MTU model and write PNGs")
    parser.add_argument(
        "--model",
        default="shapes-mtu",
        help="an MTU folder, an `mtu train` run's model/ (any method), a base pipeline (upcycled afresh: "
        "untrained), a shipped name (default shapes-mtu, the trained Shapes model) or a hub id (org/name, from the "
        "Hugging Face cache; HF_HUB_OFFLINE=1 works with a filled cache); with --runtime onnx / openvino, "
        "a folder of mtu export --format onnx / openvino",
    )
    parser.add_argument("--base", default=None, help="base pipeline of an MTU folder (default: the one it names)")
    parser.add_argument("--task", required=True, help="t2i, edit, sr, remove, inpaint, ...")
    parser.add_argument("--prompt", default=None, help="caption or instruction (default: empty)")
    parser.add_argument("--image", type=Path, default=None, help="input image file (image tasks)")
    parser.add_argument("--mask", type=Path, default=None, help="mask image file (inpaint): white = fill")
    parser.add_argument(
        "--example",
        action="store_true",
        help="the task's shipped example input and prompt (a 64x64 Shapes scene, its 16x16 copy for sr, a mask; "
        "mtu/assets/examples): every task of the Shapes models in one command; --prompt/--image/--mask override it",
    )
    add_sampler_options(parser, steps="25", guidance="1: off")
    parser.add_argument("--num-images", type=int, default=1, help=f"{setting_range('num_images')} (default 1)")
    parser.add_argument("--seed", type=int, default=0, help=f"{setting_range('seed')} (default 0)")
    parser.add_argument(
        "--out", type=output_path, default=Path("outputs"), help="folder for the PNGs (default outputs/)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace PNGs of the same names in --out")
    add_options(parser)
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx", "openvino"],
        default="torch",
        help="torch (default); onnx: --model is a folder from `mtu export --format onnx`; openvino: from "
        "`mtu export --format openvino`, in float32 unless --dtype bfloat16",
    )
    parser.set_defaults(func=run)


def apply_example(args: argparse.Namespace) -> None:
    """With --example, fill in the prompt and inputs the user did not give from the task's shipped example."""
    if not args.example:
        args.prompt = args.prompt or ""
        return
    from mtu.examples import example_inputs

    example = example_inputs(args.task)
    args.prompt = example["prompt"] if args.prompt is None else args.prompt
    args.image = args.image or example["image"]
    args.mask = args.mask or example["mask"]


def check_arguments(args: argparse.Namespace) -> list[Path]:
    """Everything that can be refused without the model; returns the PNG paths to write."""
    from mtu.assets import local_model_path
    from mtu.utils.limits import check_settings, check_text
    from mtu.utils.outputs import check_folder

    sampler_options(args)  # --guidance inf made an all-black PNG with exit 0
    check_settings(seed=args.seed, num_images=args.num_images)
    check_text(args.prompt, "--prompt")
    check_folder(args.out, [local_model_path(args.model)])  # a file here failed only after the model loaded
    paths = [args.out / f"{args.task}-{args.seed}-{index}.png" for index in range(args.num_images)]
    existing = [path for path in paths if path.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists; --overwrite replaces it (or choose another --out / --seed)"
        )
    return paths


def run(args: argparse.Namespace) -> None:
    from mtu.config import BUILTIN_TASKS
    from mtu.utils.devices import check_placement, openvino_precision, refuse_for_onnx
    from mtu.utils.images import open_image
    from mtu.utils.limits import check_image_size, check_steps

    apply_example(args)
    paths = check_arguments(args)
    if args.runtime == "onnx":
        refuse_for_onnx(args, "--runtime onnx")
    elif args.runtime == "openvino":
        openvino_precision(args, "--runtime openvino")
    else:
        check_placement(args.device, args.dtype)  # before the model loads
    image = open_image(args.image) if args.image is not None else None
    mask = open_image(args.mask, f"mask {args.mask}").convert("L") if args.mask is not None else None
    # A built-in task that scales up (sr: 4x a side) is refused before the model loads; a task of the
    # model's own is checked by the pipeline, still before any compute.
    upscale = BUILTIN_TASKS[args.task].upscale if args.task in BUILTIN_TASKS else 1
    if upscale > 1 and image is not None:
        width, height = image.size
        check_image_size(
            width * upscale, height * upscale, f"{args.task} output ({upscale} x the {width} x {height} input)"
        )

    import torch

    from mtu.sampler import SHAPES_SAMPLER  # a model storing no sampler settings runs with the Shapes one
    from mtu.utils.outputs import write_file_atomic
    from mtu.utils.signals import sigterm_as_interrupt

    # Ctrl-C or SIGTERM: one line and exit 130 / 143 (mtu.cli.main); a PNG is written whole or not at all.
    with sigterm_as_interrupt():
        pipe = load_pipeline(args)
        sampler = pipe.sampler_for(args.task, SHAPES_SAMPLER).replace(**sampler_options(args))
        check_steps(sampler.num_inference_steps, "--steps", pipe.scheduler)  # what this model's scheduler can take
        result = pipe(
            args.task,
            args.prompt,
            image=image,
            mask_image=mask,
            num_inference_steps=sampler.num_inference_steps,
            guidance_scale=sampler.guidance_scale,
            image_guidance_scale=sampler.image_guidance_scale,
            num_images_per_prompt=args.num_images,
            generator=torch.Generator().manual_seed(args.seed),
        )
        args.out.mkdir(parents=True, exist_ok=True)
        for path, picture in zip(paths, result.images):
            write_file_atomic(path, lambda temp, picture=picture: picture.save(temp, format="PNG"))
            print(path, flush=True)


def load_pipeline(args: argparse.Namespace):
    if args.runtime != "torch" and args.base is not None:
        raise ValueError(f"--base does not apply to --runtime {args.runtime}: the folder holds every network it runs")
    if args.runtime == "onnx":
        from mtu.deploy.onnx_pipeline import OnnxPipeline

        return OnnxPipeline.from_onnx(args.model)
    if args.runtime == "openvino":
        from mtu.deploy.openvino_pipeline import OpenVINOPipeline
        from mtu.utils.devices import openvino_precision

        return OpenVINOPipeline.from_openvino(args.model, precision=openvino_precision(args, "--runtime openvino"))
    from mtu.utils.devices import load_pipeline as load_placed

    return load_placed(args.model, args.base, args.device, args.dtype)
