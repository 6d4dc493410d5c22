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


# `mtu train` writes this beside the weights (mtu.training.methods.METHOD_FILE; named here so that `info`
# does not import the training package and peft).
METHOD_FILE = "training_method.json"
BASELINES = {
    "lora": "LoRA baseline: one low-rank adapter per task on each FFN, no experts",
    "ia3": "IA3 baseline: one (IA)^3 adapter per task on each FFN, no experts",
    "full": "full fine-tune of the whole denoiser, no experts",
}


def describe_mtu(folder: Path, base: str | None) -> None:
    config = MTUConfig.load(folder)
    method = _training_method(folder)
    if method in BASELINES:
        return describe_baseline(folder, config, method)
    trained = f" (trained with `mtu train`, method {method})" if method else ""
    print(f"MTU model{trained}: {config.num_experts} experts per FFN, base {config.base_model_name_or_path}")
    _print_tasks(config)
    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_mtu(folder, base=base)
    print(pipe.unet.parameter_report())


def describe_baseline(folder: Path, config: MTUConfig, method: str) -> None:
    """A LoRA / IA3 / full run folder holds an MTU config for its task layers, but no experts: say what it is."""
    info = json.loads((folder / METHOD_FILE).read_text())
    adapter = info.get("adapter") or {}
    rank = f" (rank {adapter['rank']})" if method == "lora" and adapter.get("rank") else ""
    print(f"{BASELINES[method]}{rank}; trained with `mtu train`, base {config.base_model_name_or_path}")
    _print_tasks(config)
    from mtu.training.methods import load_trained_pipeline

    model = load_trained_pipeline(folder).unet
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,} total, {trainable:,} trained")


def _training_method(folder: Path) -> str | None:
    if not (folder / METHOD_FILE).is_file():
        return None
    info = json.loads((folder / METHOD_FILE).read_text())
    method = info.get("method") if isinstance(info, dict) else None
    if not isinstance(method, str):
        raise ValueError(f"{folder / METHOD_FILE} names no training method: {info!r}")
    return method


def _print_tasks(config: MTUConfig) -> None:
    for task in config.tasks:
        print(f"  task {task.name:<10} conditioning {task.conditioning:<13} {task.description}")
