"""Section 8: `mtu train` on shapes-base with and without the latent cache: seconds per step, fill cost.

Each measurement is a whole `mtu.training.train` call in its own process (`python -m
benchmarks.train_cache ...`), configs/shapes.yaml with the tasks and steps of the row. The step time is
the steady state: the trainer logs its mean seconds per step since the loop started, so the time of
steps W+1..N is (N * mean_N - W * mean_W) / (N - W), leaving out the first W steps (allocation, warm-up).
Variants alternate in rounds; the ratio is the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.workers import REPOSITORY, run_worker
from mtu.utils.runtime import tune_allocator

TASK_SETS = {4: ("t2i", "edit", "sr", "remove"), 5: ("t2i", "edit", "sr", "remove", "inpaint")}
MODES = ("none", "latents")


def train_config(
    tasks: tuple[str, ...], cache: str, cache_dir: str, output_dir: str, steps: int, pool: int, log_every: int
):
    from mtu.training import TrainConfig
    from mtu.training.config import apply_overrides

    base = yaml.safe_load((REPOSITORY / "configs" / "shapes.yaml").read_text())
    overrides = {
        "tasks": {task: base["tasks"][task] for task in tasks},
        "output_dir": output_dir,
        "data.pool_size": pool,
        "data.cache": cache,
        "data.cache_dir": cache_dir,
        "train.max_steps": steps,
        "checkpoint.every": steps,
        "logging.every": log_every,
        "logging.log_with": "none",
        "logging.sample_every": 0,
    }
    return TrainConfig.from_dict(apply_overrides(base, overrides))


def measure(tasks: int, cache: str, cache_dir: str, steps: int, warmup: int, pool: int) -> dict:
    """One `train` call; the cache (if any) must already be filled in `cache_dir` (see `fill`)."""
    from mtu.training import train

    with tempfile.TemporaryDirectory() as output_dir:
        config = train_config(TASK_SETS[tasks], cache, cache_dir, output_dir, steps, pool, warmup)
        train(config)
        log = [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]
    mean = {entry["step"]: entry["seconds_per_step"] for entry in log}
    return {"step_seconds": (steps * mean[steps] - warmup * mean[warmup]) / (steps - warmup)}


def fill(tasks: int, cache_dir: str, pool: int) -> dict:
    """Seconds to fill the caches of `tasks` (a fresh folder), measured around the fill alone."""
    from accelerate import Accelerator

    from mtu.training.cache import training_sources
    from mtu.training.components import load_components
    from mtu.training.loop import open_sources

    config = train_config(TASK_SETS[tasks], "latents", cache_dir, tempfile.mkdtemp(), 1, pool, 1)
    components = load_components(config.model, config.data.resolution)
    sources = open_sources(config)
    start = time.perf_counter()
    training_sources(config, components, sources, Accelerator(cpu=True))
    return {"fill_seconds": time.perf_counter() - start}


def run(settings: Settings) -> Section:
    # --quick is a smoke test (CI): in-process, one task set, a few steps; subprocesses cost seconds each.
    steps, warmup, pool, rounds = (4, 2, 16, 1) if settings.quick else (45, 5, 1024, 2)
    task_sets = [5] if settings.quick else list(TASK_SETS)
    times: dict[tuple[int, str], list[float]] = {(k, m): [] for k in task_sets for m in MODES}

    def call(*arguments: str) -> dict:
        if settings.quick:
            mode, options = arguments[0], dict(zip(arguments[1::2], arguments[2::2]))
            if mode == "fill":
                return fill(int(options["--tasks"]), options["--cache-dir"], pool)
            return measure(int(options["--tasks"]), options["--cache"], options["--cache-dir"], steps, warmup, pool)
        return run_worker("benchmarks.train_cache", [*arguments, "--threads", str(settings.threads)])

    with tempfile.TemporaryDirectory() as cache_dir:
        filled = call("fill", "--tasks", str(max(task_sets)), "--cache-dir", cache_dir, "--pool", str(pool))
        for index in range(rounds):
            for tasks in task_sets:
                for mode in MODES if index % 2 == 0 else MODES[::-1]:
                    times[tasks, mode].append(
                        call(
                            "measure",
                            "--tasks",
                            str(tasks),
                            "--cache",
                            mode,
                            "--cache-dir",
                            cache_dir,
                            "--steps",
                            str(steps),
                            "--warmup",
                            str(warmup),
                            "--pool",
                            str(pool),
                        )["step_seconds"]
                    )
    ratios = {k: statistics.median(c / u for c, u in zip(times[k, "latents"], times[k, "none"])) for k in task_sets}
    table = Table(
        ["tasks", "uncached s/step", "cached s/step", "steps/s uncached", "steps/s cached", "cached / uncached"]
    )
    for k in task_sets:
        plain, cached = statistics.median(times[k, "none"]), statistics.median(times[k, "latents"])
        table.rows.append([k, plain, cached, 1 / plain, 1 / cached, ratios[k]])
    examples = max(task_sets) * pool
    return Section(
        key="cache",
        title="Training with cached latents (`data.cache: latents`)",
        method=(
            f"`mtu train configs/shapes.yaml` on shapes-base, batch 16, {settings.threads} torch thread(s), N=4, "
            f"mixed-task batches over 4 tasks (t2i, edit, sr, remove) or all 5; a pool of {pool} examples per task "
            f"(`data.pool_size`), cache filled beforehand. Each figure is a whole run in its own process: {steps} "
            f"steps, the first {warmup} left out; {rounds} round(s), modes alternating. Fill: the VAE and text "
            f"encoder over the 5 pools ({examples} examples; its cost is linear in the pool size)."
        ),
        tables=[
            table,
            Table(
                ["pools", "examples", "fill seconds", "ms per example"],
                [[5, examples, filled["fill_seconds"], 1000 * filled["fill_seconds"] / examples]],
            ),
        ],
        targets=[
            Target(
                f"cached / uncached step time, {k} tasks",
                ratios[k],
                "<=",
                0.6,
                cause="the UNet forward + backward dominates what is left",
            )
            for k in task_sets
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one cache measurement (a worker of `python -m benchmarks`)")
    parser.add_argument("mode", choices=["measure", "fill"])
    parser.add_argument("--tasks", type=int, choices=list(TASK_SETS), default=5)
    parser.add_argument("--cache", choices=MODES, default="latents")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pool", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tune", action="store_true", help="call mtu.utils.runtime.tune_allocator() first (`mtu train` does not)"
    )
    args = parser.parse_args()
    tuned = tune_allocator() if args.tune else False
    torch.set_num_threads(args.threads)
    if args.mode == "fill":
        print(json.dumps(fill(args.tasks, args.cache_dir, args.pool)))
    else:
        figures = measure(args.tasks, args.cache, args.cache_dir, args.steps, args.warmup, args.pool)
        print(json.dumps(figures | {"allocator_tuned": tuned}))


if __name__ == "__main__":
    main()
