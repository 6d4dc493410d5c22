"""kill -9 a training run at random moments, resume it each time, and compare it with an uninterrupted run.

    python -m benchmarks.kill_resume                  # 10 kills, seed 0, 40 steps (a few minutes on 2 cores)
    python -m benchmarks.kill_resume --kills 3 --steps 12

A tiny SD pipeline (`tests.helpers.save_tiny_sd_pipeline`) trains on the five Shapes tasks at 16 px, batch 2,
a checkpoint every 2 steps, as `mtu train` in a subprocess. The kills (seeded) cycle through three moments:

- "checkpoint write": when the temp folder (`.step-N.tmp`) of a checkpoint 1-3 checkpoints ahead appears,
  plus 0-10 ms: the kill lands while that checkpoint is being written (or its oldest one deleted);
- "random, steps": a uniform time among the attempt's next 1-3 checkpoints' worth of steps, counted from its
  first step (mid-step, mid-log line, a checkpoint write, an old checkpoint's deletion, the final save);
- "random, start-up": a uniform time within the start-up (imports, model building, reading the checkpoint).

A random kill that has not fired by the write of the checkpoint after those is fired there (the cap), so
every kill lands before the run ends by itself and the kills spread over the whole run.

After each kill every complete checkpoint left must read back whole (safetensors, JSON, YAML: what
`--resume` reads), and the run continues with `--resume latest`, which must succeed. When the kills are
spent the last attempt runs to the end; its `model/` must equal, bit for bit, that of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EVERY = 2  # steps between checkpoints
POLL_S = 0.001  # a tiny model's checkpoint is written in a few ms: poll faster than that


@dataclass
class Kill:
    number: int
    moment: str  # "checkpoint write", "random, steps" or "random, start-up" (+ whether the cap fired it)
    at_s: float  # seconds after the attempt's process started
    logged_step: int  # last step in train_log.jsonl when killed
    newest_checkpoint: int | None  # newest complete checkpoint left
    writing: str  # what was half done on disk: "step-N (temp folder)", "deleting step-N" or ""
    started_from: str  # what the attempt resumed from: "step N", "new run" or "killed before resuming"


def write_config(folder: Path, model: Path, steps: int) -> Path:
    data = {
        "model": str(model),
        "output_dir": str(folder / "unused"),  # each run passes --output-dir
        "seed": 0,
        "tasks": {task: {"source": {"type": "shapes"}} for task in ("t2i", "edit", "sr", "remove", "inpaint")},
        "data": {"resolution": 16, "batch_size": 2},
        "train": {"max_steps": steps, "lr_scheduler": "constant", "learning_rate": 1e-3},
        "checkpoint": {"every": EVERY, "keep": 3},
        "logging": {"every": 1, "log_with": "none"},
    }
    path = folder / "kill_resume.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def spawn(config: Path, output_dir: Path, resume: bool, log: Path) -> subprocess.Popen:
    """`mtu train` in its own process group (the kill reaches every process of it), output to `log`."""
    command = [sys.executable, "-m", "mtu", "train", str(config), "--output-dir", str(output_dir), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as handle:
        return subprocess.Popen(
            command + (["--resume", "latest"] if resume else []),
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def logged_step(run_dir: Path) -> int:
    """The last step in train_log.jsonl (a line cut short by a kill is ignored)."""
    path = run_dir / "train_log.jsonl"
    steps = [0]
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError, TypeError):
            continue
    return steps[-1]


def _reference_into(values: dict, config: Path, work: Path) -> None:
    try:
        values.update(reference_run(config, work))
    except RuntimeError as error:
        values["error"] = str(error)


def reference_run(config: Path, work: Path) -> dict:
    """The uninterrupted run: its model folder, wall time and start-up time (to first logged step)."""
    run_dir, started, first = work / "reference", time.perf_counter(), None
    process = spawn(config, run_dir, resume=False, log=work / "reference.log")
    while process.poll() is None:
        if first is None and (run_dir / "train_log.jsonl").is_file():
            first = time.perf_counter() - started
        time.sleep(0.01)
    if process.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{(work / 'reference.log').read_text()[-3000:]}")
    total = time.perf_counter() - started
    return {"model": run_dir / "model", "seconds": total, "startup": first or total}


REQUIRED = (
    "state.json",
    "state.safetensors",
    "train_config.yaml",
    "rng/process-0.json",
    "rng/process-0.safetensors",
    "model/mtu_model.safetensors",
    "model/mtu_config.json",
)


def checkpoint_problems(run_dir: Path) -> list[str]:
    """Every complete checkpoint read back as `--resume` reads it (without building a model): what failed."""
    from safetensors.torch import load_file

    from mtu.training.checkpoint import check_loadable, list_checkpoints, saved_config

    problems = []
    for folder in list_checkpoints(run_dir):
        try:
            check_loadable(folder)
            saved_config(folder)
            missing = [name for name in REQUIRED if not (folder / name).is_file()]
            if missing:
                raise ValueError(f"missing {missing}")
            for path in folder.rglob("*.safetensors"):
                load_file(path)
            for path in folder.rglob("*.json"):
                json.loads(path.read_text())
        except Exception as error:  # noqa: BLE001 -- any failure to read is the finding
            problems.append(f"{folder}: {type(error).__name__}: {error}")
    return problems


def newest_checkpoint(run_dir: Path) -> int | None:
    from mtu.training.checkpoint import list_checkpoints, step_of

    found = list_checkpoints(run_dir)
    return step_of(found[-1]) if found else None


def leftovers(run_dir: Path) -> dict[str, int]:
    """The temp / old checkpoint folders earlier kills left (name -> inode); the next save deletes them first."""
    root = run_dir / "checkpoints"
    return {path.name: path.stat().st_ino for path in root.glob(".step-*")} if root.is_dir() else {}


def _new(path: Path, stale: dict[str, int]) -> bool:
    """`path` exists and is not one of the `stale` leftovers (whose deletion touches them too: no mtimes)."""
    try:
        inode = path.stat().st_ino
    except OSError:
        stale.pop(path.name, None)  # gone: a folder of that name is a new one from now on
        return False
    return stale.get(path.name) != inode


def half_done(run_dir: Path, stale: dict[str, int]) -> str:
    """Checkpoint folders the kill left half written or half deleted (leftovers of earlier kills aside)."""
    root = run_dir / "checkpoints"
    found = []
    for path in sorted(root.glob(".step-*")) if root.is_dir() else []:
        if _new(path, stale):
            name = path.name[1:].rsplit(".", 1)[0]
            found.append(f"{name} (temp folder)" if path.name.endswith(".tmp") else f"deleting {name}")
    return ", ".join(found)


@dataclass
class Plan:
    kind: str  # "write", "steps" or "start-up"
    step: int  # kill when the temp folder of this step's checkpoint appears ("steps", "start-up": a cap)
    seconds: float = math.inf  # "steps": after this attempt's first step; "start-up": after the process starts
    delay: float = 0.0  # seconds from seeing the temp folder to the kill


def plan_kill(rng: random.Random, number: int, start: int, steps: int, reference: dict) -> Plan:
    """Kills cycle through a checkpoint write, a random time among the steps, a random time of the start-up.

    Each lets the attempt go 1-3 checkpoints past `start` at most (the cap), so that the kills spread over
    the whole run instead of the first ones finishing it.
    """
    ahead, delay = rng.randint(1, 3), rng.uniform(0, 0.01)  # a tiny checkpoint's save takes ~20-50 ms
    cap = min(start + EVERY * ahead, steps)
    kind = ("write", "steps", "start-up")[number % 3]
    if kind == "write" or start >= steps:
        return Plan("write", cap, delay=delay)  # needs no times: the reference may still be running
    per_step = (reference["seconds"] - reference["startup"]) / steps
    if kind == "steps":
        return Plan("steps", min(cap + EVERY, steps), rng.uniform(0, (cap - start) * per_step), delay)
    return Plan("start-up", min(cap + EVERY, steps), rng.uniform(0, reference["startup"]), delay)


def run_attempt(
    process: subprocess.Popen, run_dir: Path, plan: Plan | None, steps: int, stale: dict[str, int]
) -> tuple[float, str] | None:
    """Wait for `process`, killing it (SIGKILL, whole group) at the moment `plan` names. Returns (seconds from
    the start to the kill, "time" or "write": what fired it), or None when the process ended by itself."""
    started, root = time.perf_counter(), run_dir / "checkpoints"
    log, logged = run_dir / "train_log.jsonl", _size(run_dir / "train_log.jsonl")
    origin = None if plan and plan.kind == "steps" else started  # "steps": from this attempt's first step
    target, fired = plan.step if plan else 0, None
    while plan is not None and process.poll() is None:
        if origin is None and _size(log) > logged:
            origin = time.perf_counter()
        if origin is not None and time.perf_counter() - origin >= plan.seconds:
            fired = "time"
            break
        if _new(root / f".step-{target:08d}.tmp", stale):
            time.sleep(plan.delay)
            fired = "write"
            break
        if target < steps and (root / f"step-{target:08d}").is_dir():
            target += EVERY  # its write was over between two polls: take the next one
        time.sleep(POLL_S)
    if fired is None:
        process.wait()
        return None
    at = time.perf_counter() - started
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return (at, fired) if process.returncode == -signal.SIGKILL else None  # it may have exited just before


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def resume_note(log: Path) -> str:
    text = log.read_text(errors="replace")
    found = re.search(r"resumed from \S+ at step (\d+)", text)
    if found:
        return f"step {found.group(1)}"
    return "new run" if "starting a new run" in text else "killed before resuming"


def same_weights(a: Path, b: Path) -> tuple[bool, int]:
    """(every tensor of two model folders' weights files has the same name, dtype, shape and bytes, number of
    tensors). Tensors, not files: safetensors writes its metadata in no fixed order, so files can differ."""
    from safetensors.torch import load_file

    names = sorted(p.name for p in a.glob("*.safetensors"))
    same = bool(names) and names == sorted(p.name for p in b.glob("*.safetensors"))
    tensors = 0
    for name in names if same else []:
        first, second = load_file(a / name), load_file(b / name)
        same = same and first.keys() == second.keys()
        for key in first if same else []:
            x, y = first[key], second.get(key)
            same = same and x.dtype == y.dtype and x.shape == y.shape and _bits(x).equal(_bits(y))
        tensors += len(first)
    return same, tensors


def _bits(tensor):
    import torch

    return tensor.reshape(-1).view(torch.uint8)  # bitwise: -0.0 vs 0.0 and NaN payloads count


def kill_and_resume(
    work: Path,
    kills: int = 10,
    steps: int = 40,
    seed: int = 0,
    model: Path | None = None,
    reference_beside: bool = False,
) -> dict:
    """The whole experiment in `work`; returns the kills, the problems found and the final comparison.

    `reference_beside`: run the uninterrupted run beside the first attempt instead of before it: faster on
    a busy CPU (shared per process), but its times, which size the random kills, are then inflated.
    """
    if model is None:
        from tests.helpers import save_tiny_sd_pipeline

        model = save_tiny_sd_pipeline(work / "tiny-sd")
    rng, config = random.Random(seed), write_config(work, model, steps)
    reference: dict = {}
    beside = threading.Thread(target=_reference_into, args=(reference, config, work))
    beside.start()
    if not reference_beside:
        beside.join()
    run_dir, records, problems, attempt, finished, log = work / "killed", [], [], 0, False, None
    while not finished and not problems:
        attempt, start = attempt + 1, newest_checkpoint(run_dir) or 0
        if len(records) % 3:  # a random kill (see plan_kill): sized by the reference's times
            beside.join()
            if "error" in reference:
                break
        plan = plan_kill(rng, len(records), start, steps, reference)
        plan = plan if len(records) < kills else None
        log, stale = work / f"attempt-{attempt}.log", leftovers(run_dir)
        process = spawn(config, run_dir, resume=True, log=log)
        killed = run_attempt(process, run_dir, plan, steps, stale)
        if killed is None:  # ended by itself: the run is complete, or resuming failed
            finished = process.returncode == 0
            if not finished:
                problems.append(f"attempt {attempt} failed (exit {process.returncode}): {log.read_text()[-2000:]}")
            continue
        at, fired = killed
        moment = "checkpoint write" if plan.kind == "write" else f"random, {plan.kind}"
        moment += " (cap: a checkpoint write)" if plan.kind != "write" and fired == "write" else ""
        records.append(
            Kill(
                len(records) + 1,
                moment,
                at,
                logged_step(run_dir),
                newest_checkpoint(run_dir),
                half_done(run_dir, stale),
                resume_note(log),
            )
        )
        problems += checkpoint_problems(run_dir)
    beside.join()
    problems += [reference["error"]] if "error" in reference else []
    identical, tensors = (
        same_weights(reference["model"], run_dir / "model") if finished and not problems else (False, 0)
    )
    return {
        "kills": records,
        "attempts": attempt,
        "final_from": resume_note(log) if log else "-",
        "problems": problems,
        "finished": finished,
        "identical": identical,
        "tensors": tensors,
        "reference": reference,
    }


def report(result: dict, steps: int) -> str:
    lines = [
        "| kill | moment | at (s after start) | resumed from | step reached | newest checkpoint left "
        "| half-written at the kill |",
        "|---|---|---|---|---|---|---|",
    ]
    for kill in result["kills"]:
        newest = f"step {kill.newest_checkpoint}" if kill.newest_checkpoint is not None else "none"
        lines.append(
            f"| {kill.number} | {kill.moment} | {kill.at_s:.2f} | {kill.started_from} | {kill.logged_step} | "
            f"{newest} | {kill.writing or '-'} |"
        )
    during = sum(1 for kill in result["kills"] if "temp folder" in kill.writing)
    deleting = sum(1 for kill in result["kills"] if "deleting" in kill.writing)
    ended = f"ran to step {steps}" if result["finished"] else "did NOT finish"
    same = f"identical, bit for bit ({result['tensors']} tensors)" if result["identical"] else "DIFFERENT"
    lines += [
        "",
        f"kills: {len(result['kills'])}, attempts: {result['attempts']}",
        f"kills during a checkpoint write: {during}; during an old checkpoint's deletion: {deleting}",
        f"the last attempt resumed from {result['final_from']} and {ended}",
        f"problems (an unreadable checkpoint, a failed attempt): {len(result['problems'])}",
        *[f"  {problem}" for problem in result["problems"]],
        f"final model/ vs an uninterrupted run ({result['reference'].get('seconds', math.nan):.1f} s): {same}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kill_resume",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", help="folder for the runs (default: a temp folder, deleted)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as temp:
        work = Path(args.work or temp)
        work.mkdir(parents=True, exist_ok=True)
        result = kill_and_resume(work, args.kills, args.steps, args.seed)
        print(report(result, args.steps))
    return 0 if result["identical"] and not result["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
