"""Protocol v3's sections of RESULTS.md: the router pilot's choice and the learning-speed levers (validation)."""

from __future__ import annotations

import json
from pathlib import Path

from mtu.reproduce import edit_diagnosis
from mtu.reproduce.levers import levers_figure
from mtu.reproduce.thresholds import ALL_CORRECT_BAR


def router_pilot_section(context: dict) -> list[str]:
    """v3: the multi-task pilot's verdicts per candidate and the recipe it chose (docs/reproduction.md)."""
    protocol = context.get("protocol")
    pilot = getattr(protocol, "router_pilot", None)
    if not pilot:
        return []
    lines = ["## Router pilot: choice of the router recipe (validation)", "",
             "| recipe | (a) learned tasks pass | (b) t2i within 2 points of the base | (c) routing healthy |",
             "|---|---|---|---|"]  # fmt: skip
    for name, verdict in pilot.get("verdicts", {}).items():
        if verdict.get("finished"):
            marks = [verdict["a_learned_tasks_pass"], verdict["b_t2i_kept"], verdict["c_routing_healthy"]]
            lines.append(f"| `{name}` | " + " | ".join("yes" if m else "no" for m in marks) + " |")
    choice = pilot.get("choice") or {}
    return lines + ["", f"Chosen: `{choice.get('recipe')}` ({choice.get('reason')}).", ""]


def levers_section(context: dict, figures: Path) -> list[str]:
    """v3: the learning-speed levers on validation (`mtu.reproduce.levers`), every scored point, and their verdict."""
    levers = getattr(context.get("protocol"), "levers", None)
    if not levers:
        return []
    header = "| run | step | PSNR (dB) | all-correct | all-correct per edit kind |"
    lines = ["## Learning edit: the levers (validation)", "", header, "|---|---|---|---|---|"]
    for name, run in levers["runs"].items():
        for step in sorted(run["curve"], key=int):
            point = run["curve"][step]
            kinds = ", ".join(f"{kind} {v['all_correct']:.2f}" for kind, v in point.get("by_kind", {}).items())
            row = f"| `{name}` | {int(step):,} | {point['psnr']:.2f} | {point['all_correct']:.3f} | {kinds or '-'} |"
            lines.append(row)
    baselines = "; ".join(f"{t} {b['psnr']:.2f} dB / {b['all_correct']:.3f}" for t, b in levers["baselines"].items())
    verdict = {True: "adopted: every trained method re-runs with it", False: "not adopted: v3 keeps v2's loss",
               None: "not decided yet"}[levers.get("snr_adopted")]  # fmt: skip
    figure = levers_figure(levers, figures / "levers.png")
    note = f"No-learning baselines (validation): {baselines}. Min-SNR-gamma (docs/reproduction.md's rule): {verdict}."
    return lines + ["", note, "", f"![levers]({figures.name}/{figure.name})", ""]


def not_learned_section(
    context: dict, learned_tasks: dict, diagnosis_file: Path = edit_diagnosis.RECORD_FILE
) -> list[str]:
    """v3: for each task its single-task model did not learn (test), the measured evidence of why and the
    fastest measured way towards its bar (issue 27: a measured reason, never a lower bar). Validation only."""
    diagnosis = json.loads(diagnosis_file.read_text()) if diagnosis_file.is_file() else None
    levers = getattr(context.get("protocol"), "levers", None)
    failed = [state for state in learned_tasks.values() if not state.ok]
    if not levers or not failed:
        return []
    levers_samples = levers.get("protocol", {}).get("eval_samples")
    lines = ["## Tasks not learned: the evidence (validation)", "",
             "For each task whose single-task model misses the bar on test: its curve in v2's pilot under the chosen "
             "setting (`reproduction/pilot.json`), its curves under the levers (`reproduction/levers.json`, "
             f"{levers_samples} examples) and, for edit, the sampler and latent-space checks "
             "(`reproduction/edit_diagnosis.json`). A straight line through a curve's last two points is an "
             "extrapolation, not a measurement: it says how far the bar is, not that a run would reach it.",
             ""]  # fmt: skip
    pilot = context.get("pilot") or {}
    for state in failed:
        lines += [f"**{state.task}** (test: {state.gap()}):", "", *_evidence(state.task, levers, pilot, diagnosis), ""]
    return lines


def _evidence(task: str, levers: dict, pilot: dict, diagnosis: dict | None) -> list[str]:
    """One task's lines: v2's pilot curve under its chosen setting, the lever curves, edit's checks, the route."""
    chosen = (pilot.get("choice") or {}).get("setting")
    samples = (pilot.get("protocol") or {}).get("eval_samples")
    pilot_runs = {name: run for name, run in pilot.get("runs", {}).items()
                  if run["task"] == task and run["setting"] == chosen}  # fmt: skip
    runs = {name: run for name, run in levers["runs"].items() if run["task"] == task}
    lines = [f"- v2's pilot, `{chosen}` ({samples} examples): {_curve(run['curve'])}" for run in pilot_runs.values()]
    lines += [f"- `{name}` ({_setting(levers, run['setting'])}): {_curve(run['curve'])}" for name, run in runs.items()]
    if diagnosis and task == edit_diagnosis.TASK:
        lines += _diagnosis_lines(diagnosis)
    return lines + [_fastest(runs | pilot_runs, levers.get("protocol", {}).get("S"))]


def _setting(levers: dict, name: str) -> str:
    """A lever's setting as what it changes from v2's (e.g. `method: full`)."""
    settings = levers.get("protocol", {}).get("levers", {})
    base, own = settings.get("v2", {}), settings.get(name, {})
    changed = [f"{key}: {value}" for key, value in own.items() if base.get(key) != value]
    return ", ".join(changed) or "v2's recipe"


def _points(curve: dict) -> list[tuple[int, float]]:
    return sorted((int(step), point["all_correct"]) for step, point in curve.items())


def _steps_to_bar(curve: dict) -> float | None:
    """Where a straight line through the curve's last two points reaches the bar (None: no rising line)."""
    points = _points(curve)
    if len(points) < 2 or points[-1][1] <= points[-2][1]:
        return None
    (s0, a0), (s1, a1) = points[-2:]
    return s1 + (ALL_CORRECT_BAR - a1) * (s1 - s0) / (a1 - a0) if a1 < ALL_CORRECT_BAR else float(s1)


def _curve(curve: dict) -> str:
    points = _points(curve)
    text = " -> ".join(f"{a:.3f} at {s:,}" for s, a in points) + " steps (all-correct)"
    if len(points) < 2:
        return text + "; one point, no slope"
    (s0, a0), (s1, a1) = points[-2:]
    slope = 1000 * 100 * (a1 - a0) / (s1 - s0)
    reach = _steps_to_bar(curve)
    where = f"; the line reaches {ALL_CORRECT_BAR} near {round(reach, -2):,.0f} steps" if reach else "; not rising"
    return text + f", {slope:+.1f} points per 1,000 steps{where}"


def _diagnosis_lines(diagnosis: dict) -> list[str]:
    ceiling = diagnosis["vae_ceiling"]
    grid = [(s["guidance"], s["image_guidance"], edit_diagnosis.overall(s)) for s in diagnosis["settings"]]
    cells = ", ".join(f"{a:.2f} at text {g:g} / image {i:g}" for g, i, a in grid)
    model, samples = diagnosis.get("model"), diagnosis.get("samples")
    return [f"- The latent space is not the limit: the VAE round trip of the exact targets parses all-correct "
            f"{ceiling['all_correct']:.2f} (PSNR {ceiling['psnr']:.1f} dB).",
            f"- Sampler settings ({model}, {samples} examples, InstructPix2Pix dual guidance): all-correct {cells}: "
            f"the best is {max(a for *_, a in grid):.2f}, against the bar {ALL_CORRECT_BAR}."]  # fmt: skip


def _fastest(runs: dict, per_task: int | None) -> str:
    at_bar = [name for name, run in runs.items() if _points(run["curve"])[-1][1] >= ALL_CORRECT_BAR]
    if at_bar:
        return (f"- At or above the bar on validation at their last point: {', '.join(f'`{n}`' for n in at_bar)}, "
                "while the single-task models miss it on test: the task sits at its bar at this budget; what would "
                "change the verdict is a larger budget or trainable set for it, measured on validation first, never "
                "a lower bar.")  # fmt: skip
    reach = {name: _steps_to_bar(run["curve"]) for name, run in runs.items()}
    rising = {name: steps for name, steps in reach.items() if steps is not None}
    if not rising:
        return (
            "- No measured curve rises at its last point: no run here points to a number of steps that reaches the bar."
        )
    name = min(rising, key=rising.get)
    steps = round(rising[name], -2)
    return (f"- Fastest measured way towards the bar: `{name}`, whose line reaches it near {steps:,.0f} "
            f"steps (S = {per_task:,} here): what would change the verdict is that run's trainable set or budget, "
            "never a lower bar.")  # fmt: skip
