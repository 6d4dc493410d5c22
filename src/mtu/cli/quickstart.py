"""`mtu quickstart`: upcycle, train, evaluate and report on the shipped Shapes model (the README's main command)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtu.utils.limits import setting_range
from mtu.utils.outputs import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("quickstart", help="upcycle shapes-base, train every task, evaluate, write a report")
    parser.add_argument(
        "--out", type=output_path, default=Path("outputs/quickstart"), help="folder for the run and report"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=300,
        help="training steps (default 300: the whole quickstart took 3.7 minutes on 2 idle CPU cores, README)",
    )
    parser.add_argument("--eval-samples", type=int, default=32, help="held-out examples per task (default 32)")
    parser.add_argument("--seed", type=int, default=0, help=f"{setting_range('seed')} (default 0)")
    parser.add_argument("--config", type=Path, default=None, help="training config (default: configs/shapes.yaml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.utils.limits import check_count, check_settings

    check_count("--steps", args.steps)
    check_count("--eval-samples", args.eval_samples)
    check_settings(seed=args.seed)
    from mtu.quickstart import DEFAULT_CONFIG, quickstart  # torch and the rest: after the refusals

    report = quickstart(args.out, args.steps, args.eval_samples, args.seed, args.config or DEFAULT_CONFIG)
    print(f"\nreport: {report.resolve()}")
