"""Train and evaluate every run of the plan, each cached in its own folder, then write RESULTS.md.

A run's folder holds its training run (resumable: an interrupted `mtu reproduce` continues from the
last checkpoint) and `metrics.json`, written last and atomically: a run with `metrics.json` is done.
"""

from __future__ import annotations

import json
import statistics
import time
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
    """
    from mtu.reproduce.report import write_report

    settings = dict(QUICK_SETTINGS if quick else FULL_SETTINGS)
    settings.update({k: v for k, v in {"steps": steps, "eval_samples": eval_samples, "eval_steps": eval_steps}.items() if v is not None})
    seeds = seeds[:1] if quick else seeds
    tables = build_plan(quick, seeds, tasks)
    out, base = Path(out), yaml.safe_load(Path(config).read_text())
    started = time.perf_counter()
    metrics = {}
    for run in tqdm(unique_runs(tables), desc="reproduce", unit="run"):
        metrics[run] = run_once(run, out / run.name, base, settings)
    return write_report(Path(results), tables, metrics, out, base["model"], settings, time.perf_counter() - started)


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


def run_once(run: Run, folder: Path, base: dict[str, Any], settings: dict[str, int]) -> dict:
    """Train (resuming) and evaluate one run, unless its metrics are already on disk."""
    done = folder / METRICS_FILE
    if done.is_file():
        return json.loads(done.read_text())
    model_dir = None
    if run.method != "base":
        model_dir = folder / "train" / "model"
        if not (model_dir / "training_method.json").is_file():
            from mtu.training import train

            config = train_config(run, base, folder, settings["steps"])
            resume = "latest" if (folder / "train" / "checkpoints").is_dir() else None
            model_dir = Path(train(config, resume=resume)["model"])
    pipe = load_pipeline(base["model"], model_dir, run)
    result = {"run": run.name, "tasks": {}, "cost": measure_cost(pipe)}
    for task in run.tasks:
        result["tasks"][task] = evaluate(pipe, task, settings["eval_samples"], settings["eval_steps"])
    if run.method == "full":
        result["finetuned_state"] = str(_save_export(pipe, run.tasks[0], folder))
    if run.method == "mtu":
        result["routing"] = {name: w.tolist() for name, w in pipe.unet.routing_weights().items()}
    write_text_atomic(done, json.dumps(result, indent=1, default=str))
    return result


def load_pipeline(base: str, model_dir: Path | None, run: Run):
    """An MTUPipeline over the run's trained denoiser (or the freshly upcycled base for "base")."""
    from mtu.pipelines import MTUPipeline
    from mtu.training.evaluate import run_pipeline

    if model_dir is None:
        pipe = MTUPipeline.from_base(base, config=MTUConfig(tasks=list(run.tasks), num_experts=run.num_experts))
    else:
        pipe = run_pipeline(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(pipe, task: str, samples: int, steps: int) -> dict:
    from mtu.assets import SHAPES_BASE_SAMPLER
    from mtu.evaluation.shapes_eval import evaluate_mtu_task
    from mtu.training.methods import activate

    activate(pipe.unet, task)  # adapters: route through this task's adapter (no-op for MTU)
    sampler = {**SHAPES_BASE_SAMPLER, "num_inference_steps": steps}
    return evaluate_mtu_task(pipe, task, samples, seed=0, batch_size=16, **sampler)


@torch.no_grad()
def measure_cost(pipe, repeats: int = 5) -> dict:
    """Parameters, trainable parameters, GFLOPs and median latency of one denoiser call (batch 1, t2i)."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    size = unet.config.sample_size
    latent = torch.randn(1, unet.config.in_channels, size, size)
    text = torch.randn(1, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim)
    task = unet.task_names[0]
    sample = torch.cat([latent, torch.zeros(1, unet.task_in_channels(task) - latent.shape[1], size, size)], dim=1)
    call = lambda: unet(sample, torch.tensor([500]), text, task=task)  # noqa: E731
    with FlopCounterMode(display=False) as counter:
        call()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {
        "params": sum(p.numel() for p in unet.parameters()),
        "trainable": sum(p.numel() for p in unet.parameters() if p.requires_grad),
        "gflops": counter.get_total_flops() / 1e9,
        "latency_s": statistics.median(times[1:]),
    }


def _save_export(pipe, task: str, folder: Path) -> Path:
    """The fully fine-tuned denoiser as a plain state dict with the base's key names (for Fig. 2)."""
    from safetensors.torch import save_file

    path = folder / "finetuned_unet.safetensors"
    state = {key: value.contiguous() for key, value in pipe.unet.export(task).state_dict().items()}
    save_file(state, path)
    return path
