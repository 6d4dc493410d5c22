"""`mtu upcycle`: an untrained, function-preserving MTU folder from a base model."""

from __future__ import annotations

import argparse

from mtu.config import DEFAULT_TASKS, MTUConfig
from mtu.utils.outputs import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("upcycle", help="upcycle a base model into an (untrained) MTU folder")
    parser.add_argument(
        "--base",
        default="shapes-base",
        help="base pipeline folder, shipped name or hub id (org/name) (default shapes-base)",
    )
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated built-in task names")
    experts = MTUConfig.default("num_experts")
    parser.add_argument("--experts", type=int, default=experts, help=f"experts per FFN (default {experts})")
    parser.add_argument("--router-hidden-dim", type=int, default=MTUConfig.default("router_hidden_dim"))
    parser.add_argument("--task-embedding-dim", type=int, default=MTUConfig.default("task_embedding_dim"))
    parser.add_argument(
        "--out",
        required=True,
        type=output_path,
        help="folder to write mtu_config.json and mtu_model.safetensors to (never inside --base)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it holds a model mtu wrote")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.assets import resolve_model_path
    from mtu.utils.outputs import check_target, write_folder

    # before loading the base model: a refusal costs nothing
    check_target(args.out, args.overwrite, [resolve_model_path(args.base)])
    from mtu.pipelines import MTUPipeline

    config = MTUConfig(
        tasks=[name.strip() for name in args.tasks.split(",") if name.strip()],
        num_experts=args.experts,
        router_hidden_dim=args.router_hidden_dim,
        task_embedding_dim=args.task_embedding_dim,
        base_model_name_or_path=args.base,
    )
    pipe = MTUPipeline.from_pretrained(args.base, config=config)
    write_folder(args.out, pipe.unet.save_pretrained, args.overwrite)  # whole: no stale files of a replaced run
    print(pipe.unet.parameter_report())
    print(
        f"\nwrote an untrained MTU model ({', '.join(config.task_names)}; {config.num_experts} experts) to {args.out}"
    )
