"""`mtu export`: one task of an MTU model as a stock diffusers pipeline folder, an ONNX or OpenVINO folder or a
single file."""

from __future__ import annotations

import argparse

from mtu.utils.devices import add_options
from mtu.utils.outputs import output_path

FORMATS = {
    "diffusers": "a stock diffusers pipeline folder (router folded: zero overhead)",
    "onnx": "an ONNX folder run by onnxruntime (mtu.deploy.OnnxPipeline, mtu generate --runtime onnx)",
    "openvino": "an OpenVINO IR folder (mtu.deploy.OpenVINOPipeline, mtu generate --runtime openvino)",
    "single-file": "one .safetensors in the original Stable Diffusion layout (ComfyUI, AUTOMATIC1111)",
}
GRAPH_FORMATS = ("onnx", "openvino")  # the formats with --task all and --quantize


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a model as a stock diffusers pipeline, ONNX, OpenVINO or a single file"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="an MTU folder, an `mtu train` run's model/ (mtu, single-task, add-task, full), or its hub id (org/name)",
    )
    parser.add_argument("--base", default=None, help="base pipeline of an MTU folder (default: the one it names)")
    parser.add_argument(
        "--task",
        required=True,
        help="a task of the model; with --format onnx or openvino, `all`: one graph for every task",
    )
    parser.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="diffusers",
        help="; ".join(f"{name}: {what}" for name, what in FORMATS.items()),
    )
    parser.add_argument(
        "--quantize",
        choices=["int8", "int8-static"],
        default=None,
        help="--format onnx or openvino only: an 8-bit denoiser graph. int8: weights only (ONNX: linear layers; "
        "OpenVINO: linear layers and convolutions), no calibration; int8-static: weights and activations of linear "
        "layers and convolutions, calibrated on Shapes trajectories of every task (docs/deploy.md)",
    )
    add_options(parser)
    parser.add_argument(
        "--out",
        required=True,
        type=output_path,
        help="new folder (a .safetensors file for single-file); never inside --model or its base",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds an earlier mtu export (nothing else)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.loading import inspect_model
    from mtu.utils.devices import check_placement, refuse_for_onnx
    from mtu.utils.outputs import check_target

    if args.task == "all" and args.format not in GRAPH_FORMATS:
        raise ValueError(
            "--task all (one model for every task) exists for --format onnx and openvino only; "
            "export one task at a time"
        )
    if args.quantize and args.format not in GRAPH_FORMATS:
        raise ValueError(f"--quantize exists for --format onnx and openvino only (got --format {args.format})")
    if args.format == "onnx":
        refuse_for_onnx(args, "--format onnx")
    elif args.format == "openvino":  # exported in float32; the precision is chosen when it runs
        refuse_for_onnx(
            args,
            "--format openvino",
            "it is exported in float32; its precision is picked when it runs: mtu generate --runtime openvino --dtype",
        )
    check_placement(args.device, args.dtype)
    source = inspect_model(args.model)
    source.check_exportable()  # a lora / ia3 run has no one denoiser per task to write
    # before loading the model: a refusal costs nothing
    if args.format == "single-file":
        from mtu.deploy.files import check_file_target

        check_file_target(args.out, args.overwrite, source.inputs(args.base))
    else:
        check_target(args.out, args.overwrite, source.inputs(args.base))
    from mtu.utils.signals import sigterm_as_interrupt

    # Ctrl-C or SIGTERM: one line and exit 130 / 143 (mtu.cli.main); every format is written next to --out and
    # renamed into place (mtu.utils.outputs), so an interrupted export leaves nothing behind.
    with sigterm_as_interrupt():
        _export(args)


def _export(args: argparse.Namespace) -> None:
    """Load the model and write the export `args` ask for (checked by `run`)."""
    from mtu.pipelines import export_pipeline
    from mtu.utils.devices import load_pipeline

    pipe = load_pipeline(args.model, args.base, args.device, args.dtype)  # exported in that precision
    if args.format == "onnx":
        from mtu.deploy.onnx_export import export_onnx

        out = export_onnx(pipe, args.task, args.out, overwrite=args.overwrite, quantize=args.quantize)
        print(f"wrote {out} (run it with mtu generate --runtime onnx, or mtu.deploy.OnnxPipeline.from_onnx)")
    elif args.format == "openvino":
        from mtu.deploy.openvino_export import export_openvino

        out = export_openvino(pipe, args.task, args.out, overwrite=args.overwrite, quantize=args.quantize)
        print(f"wrote {out} (run it with mtu generate --runtime openvino, or mtu.deploy.OpenVINOPipeline)")
    elif args.format == "single-file":
        from mtu.deploy.single_file import export_single_file

        out = export_single_file(pipe, args.task, args.out, overwrite=args.overwrite)
        print(f"wrote {out} (original Stable Diffusion layout: ComfyUI, AUTOMATIC1111, diffusers from_single_file)")
    else:
        out = export_pipeline(pipe, args.task, args.out, overwrite=args.overwrite)
        print(f"wrote {out} (load it with diffusers.DiffusionPipeline.from_pretrained)")
