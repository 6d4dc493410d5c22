"""`mtu eval`: score a model on a benchmark's held-out set.

    mtu eval --benchmark shapes --task t2i --model shapes-base --seed 0 --num-samples 256 --json
"""

from __future__ import annotations

import argparse
import json
import sys

BENCHMARKS = ("shapes",)
# Mirrors mtu.data.shapes.tasks.TASKS; kept literal so `mtu --help` does not import the data package.
TASK_CHOICES = ("t2i", "edit", "sr", "remove", "inpaint")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` sub-command."""
    parser = subparsers.add_parser(
        "eval", help="evaluate a model on a benchmark", description="Evaluate a model on a benchmark's held-out set."
    )
    parser.add_argument("--benchmark", choices=BENCHMARKS, default="shapes", help="benchmark (default: shapes)")
    parser.add_argument("--task", choices=TASK_CHOICES, default="t2i", help="task to evaluate (default: t2i)")
    parser.add_argument("--model", required=True, help="MTU folder, or a base pipeline folder / shipped name (t2i)")
    parser.add_argument("--seed", type=int, default=0, help="selects the held-out set and the sampling noise")
    parser.add_argument("--num-samples", type=int, default=256, help="number of held-out examples (default: 256)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's sampler)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's sampler)")
    parser.add_argument("--image-guidance", type=float, default=1.5, help="image guidance of edit/sr/remove (default 1.5)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per pipeline call (default: 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--json", action="store_true", help="print only the metrics as JSON on stdout")
    parser.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    from mtu.evaluation.shapes_eval import evaluate_shapes

    if args.benchmark != "shapes":
        raise ValueError(f"unknown benchmark {args.benchmark!r}; valid options: {list(BENCHMARKS)}")
    metrics = evaluate_shapes(
        args.model,
        task=args.task,
        num_samples=args.num_samples,
        seed=args.seed,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        image_guidance_scale=args.image_guidance,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(json.dumps(metrics, indent=2) if args.json else _format(metrics), file=sys.stdout)
    return 0
