"""`mtu train config.yaml`: multi-task training (also `accelerate launch -m mtu train config.yaml`)."""

from __future__ import annotations

import argparse
import json

from mtu.utils.limits import setting_range


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train an MTU model (or a baseline) from a YAML config",
        description="Train MTU or a baseline (single-task, lora, ia3) on a mix of tasks. Ctrl-C / SIGTERM "
        "checkpoint before exiting; --resume latest continues. Distributed: accelerate launch -m mtu train ...",
    )
    parser.add_argument("config", help="YAML config, e.g. configs/shapes.yaml (schema: docs/training.md)")
    parser.add_argument("--max-steps", type=int, help="override train.max_steps (optimizer steps)")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--checkpoint-every", type=int, help="override checkpoint.every")
    parser.add_argument("--seed", type=int, help="override seed")
    parser.add_argument(
        "--resume", metavar="latest|PATH", help="continue from the latest checkpoint, a checkpoint or a run folder"
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="checkpoint and exit after N steps (the LR schedule keeps max_steps)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the trainable parameters of every method, then exit"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help=f"torch CPU threads, {setting_range('threads')} (default: the cores free at start; see mtu --help)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config with the overrides and train (or count parameters)."""
    from mtu.training import dry_run, load_config, train
    from mtu.utils.limits import check_count

    overrides = {
        "train.max_steps": args.max_steps,
        "output_dir": args.output_dir,
        "checkpoint.every": args.checkpoint_every,
        "seed": args.seed,
    }
    if args.stop_after is not None:
        check_count("--stop-after", args.stop_after)  # before the config and the model load
    config = load_config(args.config, overrides)
    if args.dry_run:
        print(dry_run(config))
        return 0
    summary = train(config, resume=args.resume, stop_after=args.stop_after)
    if summary.pop("main_process"):
        print(json.dumps(summary))
    return 0
