"""Learning edit: learning-speed levers measured on the validation split (issue 27 item 3, protocol v3).

Pre-registered in docs/reproduction.md ("Learning edit: the levers") before any of these runs. Every run is
single-task, seed 0, configs/reproduce.yaml, v2's setting (learning rate 1e-3, x10 on the input pathway)
plus one change, trained in chunks with the v2 pilot's machinery (`pilot.run_pilot_job`: resumable, one
curve point per chunk) and scored on validation, edit per edit kind:

- `edit-full`: every denoiser weight trains (method `full`): can this base learn edit at all, and when?
- `edit-v2`: v2's single-task recipe, the curve v2's pilot stopped at 2,000 steps, continued to 8,000;
- `edit-snr5`: + min-SNR-gamma loss weighting, gamma 5 (Hang et al., ICCV 2023; `train.snr_gamma`);
- `remove-v2`, `remove-snr5`: the same pair on remove, the task that sits at its bar, to S = 2,000.

Min-SNR joins v3's shared recipe (every method re-run with it) only when `snr_adopted` says so: at S, its
all-correct beats v2's by >= `MARGIN_POINTS` on edit or remove and is not below v2's by more than that on
the other. The full fine-tuning run changes no recipe (MTU trains its experts, not every weight): it says
whether edit is learnable here at all.

    python -m mtu.reproduce.levers --out runs/levers --jobs 2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtu.config import write_text_atomic
from mtu.reproduce.jobs import parallel
from mtu.reproduce.pilot import (
    INPUT_PATHWAY,
    REPRODUCE_CONFIG,
    PilotRun,
    Setting,
    run_pilot_job,
    score_checkpoint,
    validation_baselines,
)
from mtu.reproduce.thresholds import ALL_CORRECT_BAR, PSNR_MARGIN_DB

RECORD_FILE = Path("reproduction") / "levers.json"
S = 2000
MARGIN_POINTS = 0.03
FULL = {"every": 2000, "eval_samples": 256, "eval_steps": 25}
QUICK = {"every": 2, "eval_samples": 4, "eval_steps": 2}


@dataclass(frozen=True)
class Lever(Setting):
    """A `Setting` plus other training overrides, e.g. the method or `train.snr_gamma`."""

    extra: dict[str, Any] = field(default_factory=dict)

    def overrides(self) -> dict[str, Any]:
        return {**super().overrides(), **self.extra}


V2_RATES = {"learning_rate": 1e-3, "multipliers": ((INPUT_PATHWAY, 10.0),)}  # v2's single-task setting
V2 = Lever("v2", **V2_RATES)
SNR5 = Lever("snr5", **V2_RATES, extra={"train.snr_gamma": 5.0})
FULL_FT = Lever("full", **V2_RATES, extra={"method": "full"})
# The declared order (an interrupted call has the first ones), each with the step it trains to.
RUNS = (
    (PilotRun("edit", FULL_FT), 4 * S),
    (PilotRun("edit", V2), 4 * S),
    # Cut from the second stage on 2026-12-07, before any of its results, to fit v3's 24 CPU-hours (plan.V3_BUDGET):
    # min-SNR was not adopted at S, so its curve past S decides nothing.
    (PilotRun("edit", SNR5), S),
    (PilotRun("remove", V2), S),
    (PilotRun("remove", SNR5), S),
)


def run_name(run: PilotRun) -> str:
    return f"{run.task}-{run.setting.name}"


def score_by_kind(model: Path, task: str, pilot: dict, device: str) -> dict:
    """The pilot's headline scores plus, for edit, all-correct and PSNR per edit kind."""
    from mtu.data.shapes.tasks import VALIDATION_SEED, evaluation_set
    from mtu.reproduce.edit_diagnosis import edit_kind

    point = score_checkpoint(model, task, {**pilot, "per_example": True}, device)
    scores = point.pop("per_example", None)
    if task == "edit" and scores is not None:
        kinds = [edit_kind(e) for e in evaluation_set(task, pilot["eval_samples"], VALIDATION_SEED)]
        point["by_kind"] = {
            kind: {
                "examples": kinds.count(kind),
                "all_correct": float(np.mean([c for c, k in zip(scores["all_correct"], kinds) if k == kind])),
                "psnr": float(np.mean([p for p, k in zip(scores["psnr"], kinds) if k == kind])),
            }
            for kind in sorted(set(kinds))
        }
    return point


def snr_adopted(runs: dict[str, dict]) -> bool | None:
    """The pre-registered rule (module docstring); None while a run it reads has no point at S."""
    deltas = []
    for task in ("edit", "remove"):
        points = [runs.get(f"{task}-{lever}", {}).get("curve", {}).get(str(S)) for lever in ("v2", "snr5")]
        if None in points:
            return None
        deltas.append(points[1]["all_correct"] - points[0]["all_correct"])
    return max(deltas) >= MARGIN_POINTS and min(deltas) > -MARGIN_POINTS


def run_levers(out: str | Path, config: str | Path = REPRODUCE_CONFIG, results: str | Path = RECORD_FILE,
               quick: bool = False, jobs: int = 1, device: str = "cpu") -> dict:  # fmt: skip
    """Run (or continue) every lever run and write the record (curves, baselines, the min-SNR verdict)."""
    base = yaml.safe_load(Path(config).read_text())
    protocol = dict(QUICK if quick else FULL)
    protocol["prompts"] = {task: base["tasks"][task].get("prompt", True) for task in ("edit", "remove")}
    results, out = Path(results), Path(out)
    runs = _seed_curves(results, out)
    last = {run_name(run): 2 * protocol["every"] if quick else steps for run, steps in RUNS}
    # Two stages: every run to S first, full fine-tuning last (the min-SNR rule reads S), then on to the end.
    first = sorted(RUNS, key=lambda item: item[0].setting is FULL_FT)
    for stage, order in ((protocol["every"] if quick else S, first), (max(last.values()), RUNS)):
        calls = []
        for run, _ in order:
            pilot = {**protocol, "max_steps": min(stage, last[run_name(run)])}
            args = (run, out / run_name(run), base, pilot, device, float("inf"), None, False, score_by_kind)
            calls.append((run_pilot_job, args))
        if jobs > 1:
            curves = parallel(calls, jobs, desc="levers")
            runs |= {run_name(run): curve for (run, _), curve in zip(order, curves)}
            _write(results, protocol, config, runs)
        else:  # one at a time: each run's points are written as it ends, not at the stage's end
            for (run, _), (call, args) in zip(order, calls):
                runs[run_name(run)] = call(*args)
                _write(results, protocol, config, runs)
    return json.loads(results.read_text())


def _seed_curves(results: Path, out: Path) -> dict[str, dict]:
    """The record's runs; each run's curve is copied into its training folder where that has none (a new
    machine), so its scored points are kept and the run is re-trained past them, never re-scored."""
    runs = json.loads(results.read_text())["runs"] if results.is_file() else {}
    for name, curve in runs.items():
        curve_file = out / name / "curve.json"
        if not curve_file.is_file():
            curve_file.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(curve_file, json.dumps(curve, indent=1))
    return runs


def _write(results: Path, protocol: dict, config, runs: dict) -> None:
    record = {
        "protocol": {
            **protocol,
            "S": S,
            "margin_points": MARGIN_POINTS,
            "config": str(config),
            "levers": {lever.name: lever.overrides() for lever in (V2, SNR5, FULL_FT)},
        },  # fmt: skip
        "baselines": validation_baselines(("edit", "remove"), protocol["eval_samples"]),
        "runs": runs,
        "snr_adopted": snr_adopted(runs),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results, json.dumps(record, indent=1) + "\n")
    levers_figure(record, results.with_suffix(".png"))


def levers_figure(record: dict, path: Path) -> Path:
    """Edit per lever, edit per kind, remove per lever: PSNR above, parser all-correct below, bars drawn in."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 5.6), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 3, squeeze=False)
    runs, baselines = record["runs"], record["baselines"]
    for column, task in ((0, "edit"), (2, "remove")):
        for run in (r for r in runs.values() if r["task"] == task):
            steps = sorted(run["curve"], key=int)
            for row, metric in ((0, "psnr"), (1, "all_correct")):
                values = [run["curve"][s][metric] for s in steps]
                axes[row][column].plot([int(s) for s in steps], values, marker=".", label=run["setting"])
        axes[0][column].axhline(baselines[task]["psnr"], color="grey", linestyle=":", label="no-learning baseline")
        axes[0][column].axhline(baselines[task]["psnr"] + PSNR_MARGIN_DB, color="black", linestyle="--", label="bar")
        axes[0][column].set_title(f"{task}, per lever")
    styles = {"v2": "-", "snr5": "--", "full": ":"}
    for run in (r for r in runs.values() if r["task"] == "edit"):
        steps = sorted(run["curve"], key=int)
        kinds = sorted({k for s in steps for k in run["curve"][s].get("by_kind", {})})
        for index, kind in enumerate(kinds):
            for row, metric in ((0, "psnr"), (1, "all_correct")):
                values = [run["curve"][s].get("by_kind", {}).get(kind, {}).get(metric) for s in steps]
                label = f"{kind} ({run['setting']})"
                axes[row][1].plot([int(s) for s in steps], values, styles.get(run["setting"], "-"), color=f"C{index}",
                                  marker=".", label=label)  # fmt: skip
    axes[0][1].set_title("edit, per kind (line style: lever)")
    for column in range(3):
        axes[1][column].axhline(ALL_CORRECT_BAR, color="black", linestyle="--")
        axes[1][column].set_ylim(0, 1)
        axes[1][column].set_xlabel("optimizer steps (single-task)")
    axes[0][0].set_ylabel("PSNR (dB), validation")
    axes[1][0].set_ylabel("parser all-correct, validation")
    for column in range(3):
        axes[0][column].legend(fontsize=6)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/levers"), help="training state (not committed)")
    parser.add_argument("--record", type=Path, default=RECORD_FILE, help="the committed record")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    parser.add_argument("--quick", action="store_true", help="a smoke test: few steps, few examples")
    parser.add_argument("--figure-only", action="store_true", help="redraw the record's figure (.png beside it)")
    args = parser.parse_args(argv)
    if args.figure_only:
        print(levers_figure(json.loads(args.record.read_text()), args.record.with_suffix(".png")))
        return
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    record = run_levers(args.out, results=args.record, quick=args.quick, jobs=args.jobs)
    print(json.dumps({name: run["curve"] for name, run in record["runs"].items()}, indent=1))
    print(f"min-SNR adopted for v3: {record['snr_adopted']}")


if __name__ == "__main__":
    main()
