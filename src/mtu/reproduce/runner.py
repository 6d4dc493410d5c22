"""Train and evaluate every run of the plan, each cached in its own folder, then write RESULTS.md.

A run's folder holds its training run (resumable: an interrupted `mtu reproduce` continues from the
last checkpoint) and `metrics.json`, written last and atomically: a run with `metrics.json` is done.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from mtu.config import MTUConfig, write_text_atomic
from mtu.reproduce.plan import ALL_TASKS, Run, build_plan, unique_runs

METRICS_FILE = "metrics.json"
QUICK_SETTINGS = {"steps": 20, "eval_samples": 8, "eval_steps": 25}
FULL_SETTINGS = {"steps": 600, "eval_samples": 64, "eval_steps": 25}


class RunInterrupted(RuntimeError):
    """A run's training was stopped by a signal; it checkpointed, and the next `reproduce` resumes it."""


def reproduce(
    out: str | Path,
    config: str | Path,
    quick: bool = False,
    seeds: tuple[int, ...] = (0, 1),
    steps: int | None = None,
    eval_samples: int | None = None,
    results: str | Path = "RESULTS.md",
    tasks: tuple[str, ...] = ALL_TASKS,
    eval_steps: int | None = None,
    jobs: int = 1,
    device: str | None = None,
    report_only: bool = False,
) -> Path:
    """Run (or reuse) every run of the plan and write the results report; returns its path.

    Args:
        out: folder for the runs (reused: finished runs are skipped, unfinished ones resume).
        config: the training config every run starts from (model, data, optimiser); the plan sets
            method, tasks, experts, seed, steps and output folder.
        quick: one seed, N in {1, 4}, no task pairs: a smoke test of the whole path.
        seeds: training seeds (the full run needs at least 2 for a spread).
        steps, eval_samples: optimizer steps per run and held-out examples per task.
        results: where to write the report (figures go next to it, in `<stem>_figures/`).
        tasks: the tasks to compare (t2i and at least one more; all five by default).
        eval_steps: denoising steps of the evaluation sampler (default: the shipped model's 25).
        jobs: runs trained at once, each in its own process, started in priority order (main table,
            Fig. 2, experts, pairs). On one GPU, several jobs keep it busy: a tiny model's steps are
            bound by kernel launches.
        device: where runs train and evaluate (default: cuda when available, else cpu).
        report_only: run nothing; write the report from the runs already finished in `out` (the
            missing ones are listed in it).
    """
    from mtu.reproduce.report import write_report

    settings = dict(QUICK_SETTINGS if quick else FULL_SETTINGS)
    settings.update({k: v for k, v in {"steps": steps, "eval_samples": eval_samples, "eval_steps": eval_steps}.items() if v is not None})
    seeds = seeds[:1] if quick else seeds
    tables = build_plan(quick, seeds, tasks)
    out, base = Path(out), yaml.safe_load(Path(config).read_text())
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    # By importance, so an interrupted reproduction has the main claims first: main, Fig. 2, experts, pairs.
    queue = unique_runs({name: tables[name] for name in ("main", "deviation", "experts", "pairs")})
    if report_only:
        metrics = {run: json.loads((out / run.name / METRICS_FILE).read_text())
                   for run in queue if (out / run.name / METRICS_FILE).is_file()}  # fmt: skip
    elif jobs == 1:
        metrics = {run: run_once(run, out / run.name, base, settings, device) for run in tqdm(queue, desc="reproduce", unit="run")}
    else:
        metrics = _run_parallel(queue, out, base, settings, device, jobs)
    return write_report(Path(results), tables, metrics, out, base["model"], settings, time.perf_counter() - started)


def _run_parallel(queue: list[Run], out: Path, base: dict, settings: dict, device: str, jobs: int) -> dict:
    """`run_once` over `queue` in `jobs` fresh processes."""
    calls = [(run_once, (run, out / run.name, base, settings, device)) for run in queue]
    return dict(zip(queue, parallel(calls, jobs, desc="reproduce")))


def parallel(calls: list[tuple], jobs: int, desc: str) -> list:
    """Results of `function(*arguments)` for each (function, arguments) of `calls`, in order, run in `jobs`
    fresh processes (spawned: CUDA cannot be forked) with the CPU's cores shared out as torch threads.

    At most `jobs` calls are handed out at a time, so after Ctrl-C (which stops the running ones at a
    checkpoint) no queued call starts.
    """
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending, running, results = list(enumerate(calls)), {}, {}
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        with tqdm(total=len(calls), desc=desc, unit="run") as bar:
            while pending or running:
                while pending and len(running) < jobs:
                    index, (function, arguments) = pending.pop(0)
                    running[pool.submit(function, *arguments)] = index
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
                    bar.update(1)
    return [results[index] for index in range(len(calls))]


def train_config(run: Run, base: dict[str, Any], folder: Path, steps: int):
    """The run's training config: the base config with the plan's method, tasks, experts and seed."""
    from mtu.training.config import TrainConfig, apply_overrides

    method = "single-task" if run.method == "single-task" else run.method
    overrides = {
        "method": method,
        "tasks": {task: base["tasks"][task] for task in run.tasks},
        "mtu.num_experts": run.num_experts,
        "seed": run.seed,
        "output_dir": str(folder / "train"),
        "train.max_steps": steps,
        "checkpoint.every": max(steps // 4, 1),
        "logging.log_with": "none",
        "logging.sample_every": 0,
    }
    return TrainConfig.from_dict(apply_overrides(base, overrides))


def run_once(run: Run, folder: Path, base: dict[str, Any], settings: dict[str, int], device: str = "cpu") -> dict:
    """Train (resuming) and score one run on `device`, unless its metrics are already on disk.

    A run scored before some of `run.scored` existed gets the missing scores from its trained model;
    if that model is gone (a run copied in from another machine: metrics only), it is trained and
    scored again from scratch, so one run's figures always come from one model.
    """
    done = folder / METRICS_FILE
    cached = json.loads(done.read_text()) if done.is_file() else None
    if cached is not None and all(name in cached["tasks"] for name in run.scored):
        return cached
    started = time.perf_counter()
    model_dir = None
    if run.method != "base":
        model_dir = folder / "train" / "model"
        if not (model_dir / "training_method.json").is_file():
            from mtu.training import train

            cached = None  # its model is gone: everything is measured anew
            config = train_config(run, base, folder, settings["steps"])
            resume = "latest" if (folder / "train" / "checkpoints").is_dir() else None
            summary = train(config, resume=resume)
            if summary["model"] is None:  # stopped by a signal: checkpointed; the next call resumes it
                raise RunInterrupted(f"{run.name} stopped at step {summary['step']}; run again to resume")
            model_dir = Path(summary["model"])
    pipe = load_pipeline(base["model"], model_dir, run).to(device)
    # Costs (params, FLOPs, latency) are structural: the report measures them once, side by side.
    result = cached or {"run": run.name, "device": str(device), "tasks": {}, "seconds": 0.0}
    for name in run.scored:
        if name not in result["tasks"]:
            result["tasks"][name] = evaluate(pipe, name, settings["eval_samples"], settings["eval_steps"])
    if cached is None and run.method == "full":
        result["layer_deviations"] = _layer_deviations(base["model"], pipe, run.tasks[0])
    if cached is None and run.method == "mtu":
        result["routing"] = {name: w.tolist() for name, w in pipe.unet.routing_weights().items()}
    result["seconds"] = result.get("seconds", 0.0) + time.perf_counter() - started  # every call's training and scoring
    write_text_atomic(done, json.dumps(result, indent=1, default=str))
    return result


def load_pipeline(base: str, model_dir: Path | None, run: Run):
    """An MTUPipeline over the run's trained denoiser (or the freshly upcycled base for "base")."""
    from mtu.pipelines import MTUPipeline
    from mtu.training.methods import load_trained_pipeline

    if model_dir is None:
        pipe = MTUPipeline.from_base(base, config=MTUConfig(tasks=list(run.tasks), num_experts=run.num_experts))
    else:
        pipe = load_trained_pipeline(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(pipe, name: str, samples: int, steps: int) -> dict:
    """Score one of `Run.scored` (a task, or its image-only variant) on the held-out Shapes set."""
    from mtu.assets import SHAPES_BASE_SAMPLER
    from mtu.evaluation.shapes_eval import evaluate_mtu_task, parse_scored_name
    from mtu.training.methods import activate

    task, prompt = parse_scored_name(name)
    activate(pipe.unet, task)  # adapters: route through this task's adapter (no-op for MTU)
    sampler = {**SHAPES_BASE_SAMPLER, "num_inference_steps": steps}
    return evaluate_mtu_task(pipe, task, samples, seed=0, batch_size=16, prompt=prompt, **sampler)


def _layer_deviations(base_model: str, pipe, task: str) -> dict[str, list]:
    """Fig. 2's raw material: per layer of the fully fine-tuned denoiser, (L2 change, numel, partial)."""
    from diffusers import UNet2DConditionModel

    from mtu.assets import resolve_model_path
    from mtu.evaluation.analysis import layer_deviations

    pretrained = UNet2DConditionModel.from_pretrained(resolve_model_path(base_model), subfolder="unet").state_dict()
    finetuned = {key: value.detach().cpu() for key, value in pipe.unet.export(task).state_dict().items()}
    return {name: list(values) for name, values in layer_deviations(pretrained, finetuned).items()}
