"""`mtu info`: what a model folder holds — a base pipeline, a shipped model, or an MTU folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtu.assets import resolve_model_path
from mtu.config import CONFIG_NAME, MTUConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model folder (tasks, experts, parameter counts)")
    parser.add_argument("model", help="MTU folder, base pipeline folder, or shipped name (shapes-base)")
    parser.add_argument("--base", default=None, help="base model of an MTU folder (default: the one it names)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    folder = resolve_model_path(args.model)
    print(f"folder: {folder.resolve()}")
    if (folder / CONFIG_NAME).is_file():
        describe_mtu(folder, args.base)
    elif (folder / "model_index.json").is_file():
        index = json.loads((folder / "model_index.json").read_text())
        print(f"pipeline: {index.get('_class_name')}")
        for name, value in index.items():
            if not name.startswith("_") and isinstance(value, list) and value[0]:
                print(f"  {name:<16} {value[0]}.{value[1]}")
    else:
        raise ValueError(f"{folder} holds neither {CONFIG_NAME} (an MTU folder) nor model_index.json (a pipeline)")


def describe_mtu(folder: Path, base: str | None) -> None:
    from mtu.pipelines import MTUPipeline

    config = MTUConfig.load(folder)
    print(f"MTU model: {config.num_experts} experts per FFN, base {config.base_model_name_or_path}")
    for task in config.tasks:
        print(f"  task {task.name:<10} conditioning {task.conditioning:<13} {task.description}")
    pipe = MTUPipeline.from_mtu(folder, base=base)
    print(pipe.unet.parameter_report())
