"""Section: `mtu train` alone vs beside a competing CPU-bound process, default settings; `mtu --help`.

Each figure is a whole `mtu train` process with the command line's defaults (no --threads, no
OMP_NUM_THREADS): configs/shapes.yaml on shapes-base, batch 16, the steady-state seconds per step from
the trainer's log (steps W+1..N, as in the cache section). "Beside" starts one busy-looping Python
process first and stops it after. For context, the same run beside it with torch's own default (one
thread per core, `--threads <cores>`): the collapse the default choice avoids. `mtu --help` is the wall
time of the whole process, median of several.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.workers import REPOSITORY

SPINNER = [sys.executable, "-c", "while True: pass"]


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def train_seconds_per_step(steps: int, warmup: int, threads: int | None = None, beside: bool = False) -> float:
    """One `mtu train` process; steady-state seconds per optimizer step."""
    with tempfile.TemporaryDirectory() as folder:
        config = yaml.safe_load((REPOSITORY / "configs" / "shapes.yaml").read_text())
        config.update(output_dir=str(Path(folder) / "run"))
        config["train"]["max_steps"] = steps
        config["checkpoint"]["every"] = steps
        config["logging"].update(every=warmup, log_with="none", sample_every=0)
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "mtu", *(["--threads", str(threads)] if threads else []), "train", str(path)]
        spinner = subprocess.Popen(SPINNER) if beside else None
        try:
            if spinner:
                time.sleep(1.0)  # the competing process is running before ours starts, as a busy machine would be
            process = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY, env=_environment())
        finally:
            if spinner:
                spinner.kill()
                spinner.wait()
        if process.returncode != 0:
            raise RuntimeError(f"`mtu train` failed ({process.returncode}):\n{process.stderr[-2000:]}")
        log = [json.loads(line) for line in (Path(folder) / "run" / "train_log.jsonl").read_text().splitlines()]
    mean = {entry["step"]: entry["seconds_per_step"] for entry in log if "seconds_per_step" in entry}
    return (steps * mean[steps] - warmup * mean[warmup]) / (steps - warmup)


def help_seconds(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mtu", "--help"], capture_output=True, check=True, cwd=REPOSITORY)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(settings: Settings) -> Section:
    steps, warmup = (2, 1) if settings.quick else (40, 10)
    cores = os.cpu_count() or 1
    alone = train_seconds_per_step(steps, warmup)
    beside = train_seconds_per_step(steps, warmup, beside=True)
    torch_default = None if settings.quick else train_seconds_per_step(steps, warmup, threads=cores, beside=True)
    started = help_seconds(1 if settings.quick else settings.repeats)
    table = Table(
        ["run", "s/step", "vs alone"],
        [["default, alone", alone, 1.0], ["default, beside one busy process", beside, beside / alone]],
    )
    if torch_default is not None:
        table.rows.append(
            [f"--threads {cores} (torch's default), beside one busy process", torch_default, torch_default / alone]
        )
    return Section(
        key="busy",
        title="A busy CPU and start-up",
        method=(
            f"`mtu train configs/shapes.yaml` (shapes-base, batch 16, 4 tasks, uncached) as its own process with the "
            f"command line's defaults: torch threads = the cores free at start ({cores} cores here). {steps} steps, "
            f"the first {warmup} left out. 'Beside' runs one busy-looping Python process for the whole run. "
            f"`mtu --help`: wall time of the process, median of {settings.repeats}."
        ),
        tables=[table, Table(["command", "seconds"], [["mtu --help", started]])],
        targets=[
            Target(
                "training beside one busy process / alone (default settings)",
                beside / alone,
                "<=",
                2.0,
                cause="the thread count is chosen once, at start",
            ),
            Target("`mtu --help` wall time (s)", started, "<=", 0.5, cause="imports at start-up"),
        ],
    )
