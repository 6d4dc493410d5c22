"""`mtu info`: what a model holds — a base pipeline, an MTU folder, or an `mtu train` run of any method."""

from __future__ import annotations

import argparse
import json

from mtu.config import MTUConfig

BASELINES = {
    "lora": "LoRA baseline: one low-rank adapter per task on each FFN, no experts",
    "ia3": "IA3 baseline: one (IA)^3 adapter per task on each FFN, no experts",
    "full": "full fine-tune of the whole denoiser, no experts",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model folder (tasks, experts, parameter counts)")
    parser.add_argument(
        "model", help="MTU folder, `mtu train` run's model/, base pipeline folder, or shipped name (shapes-base)"
    )
    parser.add_argument("--base", default=None, help="base pipeline of an MTU folder (default: the one it names)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.loading import inspect_model

    source = inspect_model(args.model)
    print(f"folder: {source.path.resolve()}")
    if source.kind == "base":
        if args.base is not None:
            raise ValueError(f"--base: {args.model} is a base pipeline itself (--base is for MTU folders and runs)")
        describe_pipeline(source.path / "model_index.json")
    elif source.has_experts:
        describe_mtu(source, args.base)
    else:
        describe_baseline(source, args.base)


def describe_pipeline(index_path) -> None:
    """A diffusers pipeline folder: its class and components (nothing is loaded)."""
    index = json.loads(index_path.read_text())
    print(f"pipeline: {index.get('_class_name')}")
    for name, value in index.items():
        if not name.startswith("_") and isinstance(value, list) and value[0]:
            print(f"  {name:<16} {value[0]}.{value[1]}")


def describe_mtu(source, base: str | None) -> None:
    config = source.config()
    trained = f" (trained with `mtu train`, method {source.method})" if source.method else ""
    print(f"MTU model{trained}: {config.num_experts} experts per FFN, base {config.base_model_name_or_path}")
    _print_tasks(config)
    print(_load(source, base).parameter_report())


def describe_baseline(source, base: str | None) -> None:
    """A LoRA / IA3 / full run folder holds an MTU config for its task layers, but no experts: say what it is."""
    config = source.config()
    adapter = source.adapter or {}
    rank = f" (rank {adapter['rank']})" if source.method == "lora" and adapter.get("rank") else ""
    print(f"{BASELINES[source.method]}{rank}; trained with `mtu train`, base {config.base_model_name_or_path}")
    _print_tasks(config)
    model = _load(source, base)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,} total, {trained:,} trained")


def _load(source, base: str | None):
    from mtu.pipelines import MTUPipeline

    return MTUPipeline.from_pretrained(source.path, base=base).unet


def _print_tasks(config: MTUConfig) -> None:
    for task in config.tasks:
        print(f"  task {task.name:<10} conditioning {task.conditioning:<13} {task.description}")
