"""`mtu export`: one task of an MTU model as a stock diffusers pipeline folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write one task as a stock diffusers pipeline (zero overhead)")
    parser.add_argument("--model", required=True, help="MTU folder")
    parser.add_argument("--base", default=None, help="base model (default: the one named in the MTU folder)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", required=True, type=Path, help="new folder for the pipeline")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it already holds a model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.outputs import check_target

    check_target(args.out, args.overwrite)  # before loading the model: a refusal costs nothing
    from mtu.pipelines import MTUPipeline, export_pipeline

    pipe = MTUPipeline.from_mtu(args.model, base=args.base)
    out = export_pipeline(pipe, args.task, args.out, overwrite=args.overwrite)
    print(f"wrote {out} (load it with diffusers.DiffusionPipeline.from_pretrained)")
