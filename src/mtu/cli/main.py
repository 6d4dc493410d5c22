"""The `mtu` command line: a thin layer over the Python API.

Each sub-command lives in its own module under `mtu.cli` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a function taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order `mtu --help` lists them.
COMMAND_MODULES = ["quickstart", "demo", "upcycle", "generate", "export", "info", "eval", "pretrain_shapes", "train", "reproduce", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtu", description="Multi-Task Upcycling for diffusion models.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"mtu.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (ValueError, OSError, RuntimeError) as error:
        if args.debug:
            raise
        print(f"mtu {args.command}: error: {error}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
