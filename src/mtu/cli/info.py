"""`mtu info`: what a model holds — a base pipeline, an MTU folder, or an `mtu train` run of any method."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from mtu.config import MTUConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model folder (tasks, experts, parameter counts)")
    parser.add_argument(
        "model",
        help="MTU folder, `mtu train` run's model/, base pipeline folder, shipped name or hub id (org/name)",
    )
    parser.add_argument("--base", default=None, help="base pipeline of an MTU folder (default: the one it names)")
    parser.add_argument(
        "--routing",
        action="store_true",
        help="MTU models: print the per-layer router table (state, across-task JS, each task's top expert)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.loading import inspect_model

    source = inspect_model(args.model)
    if source.kind == "base" and args.base is not None:
        raise ValueError(f"--base: {args.model} is a base pipeline itself (--base is for MTU folders and runs)")
    if args.json:
        print(json.dumps(describe_json(source, args.base, args.routing), indent=1))
        return
    print(f"folder: {source.path.resolve()}")
    if source.kind == "base":
        describe_pipeline(source.path / "model_index.json")
    elif source.has_experts:
        describe_mtu(source, args.base, args.routing)
    else:
        describe_baseline(source, args.base)
    if source.kind != "base":
        describe_sampler(source)


def describe_json(source, base: str | None, routing: bool) -> dict:
    """The same facts as the text, as one object (router health: the summary; per layer with --routing)."""
    info = {"folder": str(source.path.resolve()), "kind": source.kind}
    if source.kind == "base":
        index = json.loads((source.path / "model_index.json").read_text())
        return {**info, "pipeline": index.get("_class_name")}
    config = source.config()
    info.update(method=source.method, tasks=config.task_names, base=config.base_model_name_or_path)
    info["sampler"] = {task: asdict(settings) for task, settings in _samplers(source).items()}
    model = _load(source, base)
    report = model.parameter_report()
    info.update(parameters=report.total, trainable=report.trainable)
    if source.has_experts:
        health = _health(model)
        info.update(num_experts=config.num_experts, router_bias=config.router_bias)
        info["router_health"] = health.to_dict() if routing else health.summary()
    return info


def describe_pipeline(index_path) -> None:
    """A diffusers pipeline folder: its class and components (nothing is loaded)."""
    index = json.loads(index_path.read_text())
    print(f"pipeline: {index.get('_class_name')}")
    for name, value in index.items():
        if not name.startswith("_") and isinstance(value, list) and value[0]:
            print(f"  {name:<16} {value[0]}.{value[1]}")


def describe_mtu(source, base: str | None, routing: bool = False) -> None:
    config = source.config()
    trained = f" (trained with `mtu train`, method {source.method})" if source.method else ""
    print(f"MTU model{trained}: {config.num_experts} experts per FFN, base {config.base_model_name_or_path}")
    _print_tasks(config)
    model = _load(source, base)
    print(model.parameter_report())
    health = _health(model)
    print(health.summary_line())
    if routing:
        print(health.table())


def _health(model):
    """Router health over every task the model serves (DESIGN.md section 1)."""
    from mtu.evaluation.router_health import router_health

    return router_health(model)


def describe_baseline(source, base: str | None) -> None:
    """A LoRA / IA3 / full run folder holds an MTU config for its task layers, but no experts: say what it is."""
    config = source.config()
    adapter = source.adapter or {}
    rank = f" (rank {adapter['rank']})" if source.method.ranked and adapter.get("rank") else ""
    print(f"{source.method.spec.summary}{rank}; trained with `mtu train`, base {config.base_model_name_or_path}")
    _print_tasks(config)
    model = _load(source, base)
    from mtu.utils.modules import count_parameters

    trained = count_parameters(model, trainable=True)
    print(f"parameters: {count_parameters(model):,} total, {trained:,} trained")


def _samplers(source) -> dict:
    """The sampler settings stored with the model, by task (`mtu.sampler`); {} when it stores none."""
    from mtu.sampler import load_sampler

    return load_sampler(source.path, source.config().task_names)


def describe_sampler(source) -> None:
    """Each task's stored sampler: what `MTUPipeline`, generate, serve and eval run it with when not told."""
    samplers = _samplers(source)
    if not samplers:
        print("sampler: none stored (each caller's defaults: MTUPipeline 50 steps at guidance 7.5, the commands 25 "
              "steps at guidance 1)")  # fmt: skip
        return
    print("sampler (the defaults of MTUPipeline, mtu generate, serve and eval):")
    for task in source.config().task_names:
        print(f"  task {task:<10} {samplers[task].describe() if task in samplers else 'none stored'}")


def _load(source, base: str | None):
    from mtu.pipelines import MTUPipeline

    return MTUPipeline.from_pretrained(source.path, base=base).unet


def _print_tasks(config: MTUConfig) -> None:
    for task in config.tasks:
        print(f"  task {task.name:<10} conditioning {task.conditioning:<13} {task.description}")
