"""The pilot: single-task learning curves on the validation split choose S and the learning-rate setting.

Protocol step 4 (docs/reproduction.md), fixed before any result: for each of the paper's tasks and each
candidate setting, one single-task run (seed 0) at a constant learning rate after warm-up, scored on
the validation split (`VALIDATION_SEED`, disjoint from the test set and the training pools) every
`every` steps. With a constant rate and a data stream that is a pure function of (seed, step), the
checkpoint at step s *is* the single-task model of s steps. A task passes at s when its model beats its
no-learning baseline by `PSNR_MARGIN_DB` and reaches parser all-correct `ALL_CORRECT_BAR` (t2i, which has
no input to copy: the all-correct bar alone). S is the smallest s at which every task passes under one
setting; the setting with the smallest S wins (ties: the larger mean PSNR margin at S). A task that passes
under no setting is left out of S and reported: its claims are "undecidable at this budget".

A pilot is resumable: each run's curve (`curve.json` in its folder) grows by one point per chunk of
`every` steps, and the runs' small results are copied to the committed `reproduction/pilot.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtu.config import write_text_atomic
from mtu.reproduce.thresholds import ALL_CORRECT_BAR, PSNR_MARGIN_DB

PILOT_TASKS = ("t2i", "edit", "sr", "remove")
INPUT_PATHWAY = "conv_in|task_embedding|router"  # the parts that start untrained (zero init) or are new


@dataclass(frozen=True)
class Setting:
    """A candidate optimisation setting: base learning rate and multipliers (`train.lr_multipliers`)."""

    name: str
    learning_rate: float
    multipliers: tuple[tuple[str, float], ...] = ()

    def overrides(self) -> dict[str, Any]:
        return {"train.learning_rate": self.learning_rate, "train.lr_multipliers": dict(self.multipliers)}


# In the order they run (an interrupted pilot has the first ones): the shipped config's 3e-4 learned edit
# slowly in the first look, so it comes last.
SETTINGS = (
    Setting("lr1e-3", 1e-3),
    Setting("lr1e-3-input-x10", 1e-3, ((INPUT_PATHWAY, 10.0),)),
    Setting("lr3e-4", 3e-4),
)


@dataclass(frozen=True)
class PilotRun:
    task: str
    setting: Setting

    @property
    def name(self) -> str:
        return f"pilot-{self.task}-{self.setting.name}"


def pilot_runs(tasks: tuple[str, ...] = PILOT_TASKS, settings: tuple[Setting, ...] = SETTINGS) -> list[PilotRun]:
    # Setting-major: an interrupted pilot has every task of the first settings rather than half the tasks.
    return [PilotRun(task, setting) for setting in settings for task in tasks]


def headline(task: str, metrics: dict) -> dict[str, float]:
    """The two numbers the bar reads: PSNR (inside the hole for inpainting) and parser all-correct."""
    psnr = metrics.get("psnr_hole", metrics.get("psnr"))
    return {"psnr": psnr, "all_correct": metrics["all_correct"]}


def passes(task: str, point: dict, baseline: dict | None) -> bool:
    if point["all_correct"] < ALL_CORRECT_BAR:
        return False
    return baseline is None or point["psnr"] >= baseline["psnr"] + PSNR_MARGIN_DB


def choose(curves: dict[str, dict], baselines: dict[str, dict]) -> dict:
    """S and the setting by the rule in the module docstring, from {run name: curve record}.

    A task that passes under no measured setting is "unlearned": it is left out of S (protocol step 4
    says its claims are "undecidable at this budget"; it cannot also make every other task's S
    undefined), and S is the smallest s at which every other pilot task passes under one setting.
    """
    by_setting: dict[str, dict[str, dict]] = {}
    for record in curves.values():
        by_setting.setdefault(record["setting"], {})[record["task"]] = record
    first_pass = {setting: {task: _first_pass(task, record, baselines.get(task)) for task, record in records.items()}
                  for setting, records in by_setting.items()}  # fmt: skip
    measured = {task for passing in first_pass.values() for task in passing}
    unlearned = sorted(t for t in measured if all(p.get(t) is None for p in first_pass.values()))
    needed = [t for t in PILOT_TASKS if t not in unlearned]
    candidates, never = [], {}
    for setting, passing in first_pass.items():
        never[setting] = sorted(task for task, v in passing.items() if v is None)
        if needed and all(passing.get(t) is not None for t in needed):
            s = max(passing[t] for t in needed)
            margin = _mean_margin({t: by_setting[setting][t] for t in needed}, baselines, s)
            candidates.append((s, -margin, setting, {t: passing[t] for t in needed}))
    if not candidates:
        return {"S": None, "setting": None, "never_passed": never, "unlearned": unlearned}
    s, _, setting, passing = min(candidates)
    return {"S": s, "setting": setting, "first_pass": passing, "never_passed": never, "unlearned": unlearned}


def _first_pass(task: str, record: dict, baseline: dict | None) -> int | None:
    steps = [int(s) for s, point in record["curve"].items() if passes(task, point, baseline)]
    return min(steps) if steps else None


def _mean_margin(records: dict[str, dict], baselines: dict[str, dict], step: int) -> float:
    """Mean PSNR margin over the baseline at `step` (the nearest scored step at or after it)."""
    margins = []
    for task, record in records.items():
        if task not in baselines:
            continue
        scored = sorted(int(s) for s in record["curve"] if int(s) >= step)
        if scored:
            margins.append(record["curve"][str(scored[0])]["psnr"] - baselines[task]["psnr"])
    return sum(margins) / len(margins) if margins else 0.0


def run_pilot_job(run: PilotRun, folder: Path, base: dict, pilot: dict, device: str, deadline: float,
                  baseline: dict | None = None, stop_passed: bool = False, score=None) -> dict:  # fmt: skip
    """Train `run` chunk by chunk (`every` steps each), scoring each new checkpoint, until `max_steps`,
    until the next chunk would end after `deadline` (a `time.time()`), or (`stop_passed`) once it has
    passed the bar against `baseline`; returns its curve record. `score(model folder, task, pilot, device)`
    scores a checkpoint (default `score_checkpoint`)."""
    from mtu.reproduce.jobs import RunInterrupted
    from mtu.training import train
    from mtu.training.checkpoint import list_checkpoints, step_of

    curve_file = folder / "curve.json"
    record = json.loads(curve_file.read_text()) if curve_file.is_file() else None
    record = record or {"task": run.task, "setting": run.setting.name, "device": device, "curve": {}, "seconds": 0.0}
    config = pilot_config(run, base, folder, pilot)
    chunk_seconds = 0.0
    while True:
        # Training continues from the checkpoint on disk; a curve copied from another machine without
        # its checkpoint is re-trained from step 0 (its points are kept, not re-scored).
        found = list_checkpoints(folder / "train")
        done = step_of(found[-1]) if found else 0
        scored_to = max((int(s) for s in record["curve"]), default=0)
        unscored = done and done % pilot["every"] == 0 and str(done) not in record["curve"]  # e.g. killed while scoring
        passed = stop_passed and _first_pass(run.task, record, baseline) is not None
        finished = max(done, scored_to) >= pilot["max_steps"] and not unscored
        if passed or finished or time.time() + chunk_seconds > deadline:
            return record
        started = time.perf_counter()
        if unscored:
            step, summary = done, {"checkpoint": str(found[-1])}
        else:
            summary = train(
                config, resume="latest" if found else None, stop_after=pilot["every"] - done % pilot["every"]
            )
            step = summary["step"]
        if step % pilot["every"] and step < config.train.max_steps:  # a signal stopped it mid-chunk
            raise RunInterrupted(f"{run.name} stopped at step {step}; run the pilot again to resume")
        if str(step) not in record["curve"]:
            model = Path(summary["checkpoint"]) / "model"
            record["curve"][str(step)] = (score or score_checkpoint)(model, run.task, pilot, device)
        chunk_seconds = time.perf_counter() - started
        record["seconds"] += chunk_seconds
        write_text_atomic(curve_file, json.dumps(record, indent=1))


def pilot_config(run: PilotRun, base: dict, folder: Path, pilot: dict):
    tasks = {run.task: base["tasks"][run.task]}
    return curve_config(base, folder, pilot, {"method": "single-task", "tasks": tasks, **run.setting.overrides()})


def curve_config(base: dict, folder: Path, pilot: dict, overrides: dict):
    """A pilot run's training config: seed 0, a checkpoint every `every` steps (one kept: it is scored, then
    superseded), no logs or samples, plus the run's own `overrides` (method, tasks, rates)."""
    from mtu.training.config import TrainConfig, apply_overrides

    fixed = {
        "seed": 0,
        "output_dir": str(folder / "train"),
        "train.max_steps": pilot["max_steps"],
        "checkpoint.every": pilot["every"],
        "checkpoint.keep": 1,
        "logging.log_with": "none",
        "logging.sample_every": 0,
    }
    return TrainConfig.from_dict(apply_overrides(base, {**fixed, **overrides}))


def score_checkpoint(model: Path, task: str, pilot: dict, device: str) -> dict:
    """Headline scores of a checkpoint's model on the validation split (prompt as the task trains)."""
    from mtu.data.shapes.tasks import VALIDATION_SEED
    from mtu.evaluation.shapes_eval import score_reference
    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    prompt = pilot["prompts"].get(task, True)
    per_example = pilot.get("per_example", False)  # each example's scores too (e.g. to split them by kind)
    metrics = score_reference(
        pipe, task, pilot["eval_samples"], VALIDATION_SEED, pilot["eval_steps"], prompt, per_example
    )
    point = headline(task, metrics)
    return {**point, "per_example": metrics["per_example"]} if per_example else point


def validation_baselines(tasks: tuple[str, ...], samples: int) -> dict[str, dict]:
    from mtu.data.shapes.baselines import BASELINES
    from mtu.data.shapes.tasks import VALIDATION_SEED
    from mtu.evaluation.shapes_eval import evaluate_baseline

    return {t: headline(t, evaluate_baseline(t, samples, VALIDATION_SEED)) for t in tasks if t in BASELINES}


PILOT_FILE = Path("reproduction") / "pilot.json"
REPRODUCE_CONFIG = Path(__file__).resolve().parents[1] / "assets" / "configs" / "reproduce.yaml"
FULL_PILOT = {"max_steps": 8000, "every": 500, "eval_samples": 128, "eval_steps": 25}
QUICK_PILOT = {"max_steps": 4, "every": 2, "eval_samples": 4, "eval_steps": 2}


def run_pilot(
    out: str | Path,
    config: str | Path,
    results: str | Path = PILOT_FILE,
    quick: bool = False,
    jobs: int = 1,
    device: str | None = None,
    time_limit: float | None = None,
    tasks: tuple[str, ...] = PILOT_TASKS,
    settings: tuple[str, ...] | None = None,
    only: tuple[str, ...] | None = None,
    until: int | None = None,
    stop_passed: bool = False,
) -> dict:
    """Run (or continue) the pilot's runs and write its record (curves, baselines, choice) to `results`.

    Args:
        out: folder of the pilot's runs (training state; not committed).
        config: the reproduction's training config (configs/reproduce.yaml).
        results: the committed record; curves already in it are kept, and extended by this call.
        quick: a smoke test (few steps, few examples).
        jobs: runs at once, one process each.
        device: where runs train and score (default: cuda when available, else cpu).
        time_limit: seconds; no chunk starts that would end after it (resume later with the same call).
        tasks, settings: run only these tasks / setting names (the record keeps every run measured before).
        only: run only the runs of these names (e.g. "pilot-edit-lr1e-3"), within `tasks` x `settings`.
        until: train runs only to this step in this call (e.g. the best S so far: the choice cannot move
            past it); the protocol's `max_steps` is unchanged.
        stop_passed: a run stops once it passes the bar (its later points cannot lower S).
    """
    import torch
    import yaml

    from mtu.reproduce.jobs import parallel

    base, pilot = yaml.safe_load(Path(config).read_text()), dict(QUICK_PILOT if quick else FULL_PILOT)
    pilot["prompts"] = {t: base["tasks"][t].get("prompt", True) for t in tasks}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    deadline = time.time() + (time_limit if time_limit is not None else float("inf"))
    results, out = Path(results), Path(out)
    record = json.loads(results.read_text()) if results.is_file() else {"runs": {}}
    runs = _selected_runs(tasks, settings, only)
    capped = {**pilot, "max_steps": min(until, pilot["max_steps"])} if until else pilot
    baselines = validation_baselines(PILOT_TASKS, pilot["eval_samples"])
    calls = [
        (run_pilot_job, (run, out / run.name, base, capped, device, deadline, baselines.get(run.task), stop_passed))
        for run in runs
    ]
    for run in runs:  # curves measured elsewhere (the committed record) seed the run folders
        seeded = out / run.name / "curve.json"
        if run.name in record["runs"] and not seeded.is_file():
            seeded.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(seeded, json.dumps(record["runs"][run.name], indent=1))
    curves = parallel(calls, jobs, desc="pilot") if jobs > 1 else [call(*args) for call, args in calls]
    measured = {**record["runs"], **{run.name: curve for run, curve in zip(runs, curves)}}
    return _write_record(results, pilot, config, baselines, measured)


def _selected_runs(tasks: tuple[str, ...], settings: tuple[str, ...] | None, only: tuple[str, ...] | None):
    chosen = [s for s in SETTINGS if settings is None or s.name in settings]
    if settings is not None and len(chosen) != len(set(settings)):
        raise ValueError(
            f"unknown pilot settings {sorted(set(settings) - {s.name for s in SETTINGS})}; "
            f"valid: {[s.name for s in SETTINGS]}"
        )
    return [run for run in pilot_runs(tasks, tuple(chosen)) if only is None or run.name in only]


def _write_record(results: Path, pilot: dict, config, baselines: dict, measured: dict) -> dict:
    """The committed record (protocol, baselines, every curve, the choice) and its figure."""
    from mtu.reproduce.pilot_figure import pilot_figure

    protocol = {**pilot, "psnr_margin_db": PSNR_MARGIN_DB, "all_correct_bar": ALL_CORRECT_BAR}
    protocol.update(settings=[s.__dict__ for s in SETTINGS], config=str(config))
    record = {"protocol": protocol, "baselines": baselines, "runs": {name: measured[name] for name in sorted(measured)}}
    record["choice"] = choose(record["runs"], baselines)
    results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results, json.dumps(record, indent=1) + "\n")
    pilot_figure(record, results.with_suffix(".png"))
    return record


def chosen_setting(record: dict | None) -> Setting | None:
    """The setting the pilot chose (None when it has not chosen one yet)."""
    name = ((record or {}).get("choice") or {}).get("setting")
    return next((s for s in SETTINGS if s.name == name), None)
