"""`mtu eval`: score a model on a benchmark's held-out set, or on your own data with the paper's metrics.

mtu eval --benchmark shapes --task t2i --model shapes-base --seed 0 --num-samples 256 --json
mtu eval --benchmark shapes --task sr --model runs/shapes-mtu/model --no-prompt   # any `mtu train` method
mtu eval --benchmark folder --data edits.jsonl --task edit --model my-mtu --clip ./clip-vit-l14
"""

from __future__ import annotations

import argparse
import json
import sys

from mtu.cli.options import add_sampler_options, sampler_options
from mtu.config import BUILTIN_TASKS
from mtu.utils.devices import add_options
from mtu.utils.limits import setting_range

BENCHMARKS = ("shapes", "folder")
TASK_CHOICES = tuple(BUILTIN_TASKS)  # the Shapes world makes every built-in task (mtu.data.shapes.tasks.TASKS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` sub-command."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on a benchmark",
        description="Evaluate a model on the Shapes held-out set, or on your own data (--benchmark folder).",
    )
    parser.add_argument(
        "--benchmark",
        choices=BENCHMARKS,
        default="shapes",
        help="shapes: the built-in held-out set; folder: your --data with the paper's metrics (default: shapes)",
    )
    parser.add_argument("--task", choices=TASK_CHOICES, default="t2i", help="task to evaluate (default: t2i)")
    parser.add_argument(
        "--model",
        required=True,
        help="an `mtu train` run's model/ folder (any method), an MTU folder, "
        "or a base pipeline folder / shipped name (upcycled afresh); any of them as a hub id (org/name)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help=f"selects the held-out set and the sampling noise, {setting_range('seed')}"
    )
    parser.add_argument(
        "--num-samples", type=int, default=None, help="examples to score (default: shapes 256, folder all)"
    )
    add_sampler_options(parser, steps="shapes 25, folder 50", guidance="shapes 1, folder 7.5")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per pipeline call (default: 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    add_options(parser, device=False)
    parser.add_argument("--json", action="store_true", help="print only the metrics as JSON on stdout")
    parser.add_argument(
        "--no-prompt",
        action="store_true",
        help="shapes: score sr / inpaint / edit / remove with empty prompts, from the image alone (a Shapes caption "
        "names the whole scene, so with it a strong base answers sr and inpaint without reading the image)",
    )
    _folder_options(parser)
    parser.set_defaults(func=run)


def _folder_options(parser: argparse.ArgumentParser) -> None:
    folder = parser.add_argument_group("folder benchmark (docs/evaluation.md)")
    folder.add_argument("--data", default=None, help="a .jsonl file, or a folder holding metadata.jsonl")
    folder.add_argument("--metrics", default=None, help="comma-separated metrics (default: the task's paper metrics)")
    folder.add_argument(
        "--clip", default=None, help="CLIP folder or cached hub id (default: openai/clip-vit-large-patch14)"
    )
    folder.add_argument(
        "--inception", default=None, help="FID Inception weight file (default: torch hub's checkpoints)"
    )
    folder.add_argument("--lpips", default=None, help="LPIPS backbone weight file (default: torch hub's alexnet file)")
    folder.add_argument("--resolution", type=int, default=None, help="square output size (default: the model's)")


def _format(metrics: dict) -> str:
    """Human-readable summary: headline rates, then the split by number of objects."""

    def rates(values: dict) -> str:
        keys = ("psnr", "ssim", "all_correct", "background", "color", "shape", "position", "count")
        return "  ".join(f"{key} {values[key]:.3f}" for key in keys if values.get(key) is not None)

    lines = [
        f"{metrics['model']} on shapes/{metrics['task']}: {metrics['num_samples']} samples, seed {metrics['seed']}, "
        f"sampler {metrics['sampler']}",
        f"  all objects   {rates(metrics)}",
    ]
    for count, values in metrics.get("by_num_objects", {}).items():
        lines.append(f"  {count} object(s)  {rates(values)}  (n={values['num_images']})")
    return "\n".join(lines)


def _format_folder(result: dict) -> str:
    lines = [
        f"{result['model']} on {result['data']} ({result['task']}): {result['num_samples']} samples, "
        f"seed {result['seed']}, {result['resolution']}px, sampler {result['sampler']}"
    ]
    lines += [f"  {name:<24}{value:.4f}" for name, value in result["metrics"].items()]
    lines += [f"  {name:<24}skipped: {reason}" for name, reason in result["skipped"].items()]
    return "\n".join(lines)


def run_folder(args: argparse.Namespace) -> dict:
    from mtu.evaluation.user_eval import evaluate_folder

    if args.data is None:
        raise ValueError("--benchmark folder needs --data <file.jsonl or folder>")
    if args.no_prompt:
        raise ValueError("--no-prompt: only for --benchmark shapes (a folder benchmark scores your own prompts)")
    return evaluate_folder(
        args.model,
        args.data,
        metrics=[name.strip() for name in args.metrics.split(",") if name.strip()] if args.metrics else None,
        clip=args.clip,
        inception=args.inception,
        lpips=args.lpips,
        num_samples=args.num_samples,
        resolution=args.resolution,
        **_shared_options(args),
    )


def run_shapes(args: argparse.Namespace) -> dict:
    from mtu.evaluation.shapes_eval import evaluate_shapes

    given = [
        flag
        for flag, value in (
            ("--data", args.data),
            ("--metrics", args.metrics),
            ("--clip", args.clip),
            ("--inception", args.inception),
            ("--lpips", args.lpips),
            ("--resolution", args.resolution),
        )
        if value is not None
    ]
    if given:
        raise ValueError(f"{', '.join(given)}: only for --benchmark folder")
    return evaluate_shapes(
        args.model,
        num_samples=256 if args.num_samples is None else args.num_samples,
        prompt=not args.no_prompt,
        **_shared_options(args),
    )


def _shared_options(args: argparse.Namespace) -> dict:
    """The options both benchmarks take, under their evaluators' names; an unset sampler option is left out, so
    each evaluator takes the model's stored sampler (`mtu.sampler`), else its own default (shapes: 25 steps at
    guidance 1, folder: 50 steps at guidance 7.5)."""
    sampler = sampler_options(args)
    return {
        "task": args.task,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
        **{key: value for key, value in sampler.items() if value is not None},
    }


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse impossible or oversized numbers before any model loads (`--resolution 0` used to mean "default")."""
    from mtu.utils.limits import MAX_IMAGES, check_count, check_settings, check_side

    sampler_options(args)
    check_settings(seed=args.seed)
    if args.num_samples is not None:
        check_count("--num-samples", args.num_samples)
    check_count("--batch-size", args.batch_size, MAX_IMAGES)
    if args.resolution is not None:
        check_side("--resolution", args.resolution)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    check_numbers(args)
    if args.benchmark == "shapes":
        metrics, text = run_shapes(args), _format
    elif args.benchmark == "folder":
        metrics, text = run_folder(args), _format_folder
    else:
        raise ValueError(f"unknown benchmark {args.benchmark!r}; valid options: {list(BENCHMARKS)}")
    print(json.dumps(metrics, indent=2) if args.json else text(metrics), file=sys.stdout)
    return 0
