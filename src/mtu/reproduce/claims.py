"""The paper's claims judged from run records (protocol v2): a verdict per task, with its interval.

A verdict compares two groups of runs on one task and one metric with a paired bootstrap over seeds
and test examples (`mtu.reproduce.stats`), against margins fixed before any result: 0.5 dB PSNR,
3 points of accuracy, 2 points for "T2I quality is kept". A task whose single-task model does not
clear the pilot's bar on test (its no-learning baseline + 2 dB PSNR and parser all-correct >= 0.5)
has not been learned: every claim involving it says "undecidable at this budget", with the gap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mtu.reproduce.pilot import ALL_CORRECT_BAR, PSNR_MARGIN_DB
from mtu.reproduce.plan import MAIN_EXPERTS, Run

UNDECIDABLE = "undecidable at this budget"


def metrics_of(task: str) -> tuple[str, ...]:
    """The headlines a task is judged by: parser all-correct, and PSNR for tasks with an input image
    (a target to compare against exactly; generation from text alone has none)."""
    from mtu.config import BUILTIN_TASKS

    return ("all_correct",) if BUILTIN_TASKS[task].conditioning == "none" else ("psnr", "all_correct")


def scores(records: dict[Run, dict], runs: list[Run], task: str, metric: str) -> list[list[float]]:
    """Per-example scores of `task`, one list per run (seed); PSNR is taken inside the hole where there is one."""
    found = []
    for run in runs:
        per_example = records.get(run, {}).get("tasks", {}).get(task, {}).get("per_example")
        key = "psnr_hole" if metric == "psnr" and per_example and "psnr_hole" in per_example else metric
        if per_example and key in per_example:  # t2i has no PSNR
            found.append(per_example[key])
    return found


def mean_of(records: dict[Run, dict], runs: list[Run], task: str, metric: str) -> float | None:
    values = [statistics.mean(s) for s in scores(records, runs, task, metric)]
    return statistics.mean(values) if values else None


@dataclass
class Learned:
    """Whether a task was learned: its single-task model's test scores against the baseline's."""

    task: str
    psnr: float | None
    all_correct: float | None
    baseline_psnr: float | None

    @property
    def ok(self) -> bool:
        if self.all_correct is None or self.all_correct < ALL_CORRECT_BAR:
            return False
        return self.baseline_psnr is None or (
            self.psnr is not None and self.psnr >= self.baseline_psnr + PSNR_MARGIN_DB
        )

    def gap(self) -> str:
        parts = [
            f"all-correct {self.all_correct:.3f} (bar {ALL_CORRECT_BAR})" if self.all_correct is not None else "not run"
        ]
        if self.baseline_psnr is not None and self.psnr is not None:
            parts.append(f"PSNR {self.psnr - self.baseline_psnr:+.2f} dB over the baseline (bar +{PSNR_MARGIN_DB})")
        return ", ".join(parts)


def learned(
    records: dict[Run, dict], main: list[Run], baselines: dict[str, dict], tasks: tuple[str, ...]
) -> dict[str, Learned]:
    found = {}
    for task in tasks:
        single = [r for r in main if r.method == "single-task" and r.tasks == (task,)]
        base = baselines.get(task)
        base_psnr = base.get("psnr_hole", base.get("psnr")) if base else None
        found[task] = Learned(
            task, mean_of(records, single, task, "psnr"), mean_of(records, single, task, "all_correct"), base_psnr
        )
    return found


def judge(records, a: list[Run], b: list[Run], task: str, metric: str, kind: str, margin: float | None = None) -> dict:
    """One verdict: group `a` against group `b` ("beats": a better than b; "kept": a not worse than b)."""
    from mtu.reproduce.stats import compare

    first, second = scores(records, a, task, metric), scores(records, b, task, metric)
    if not first or not second:
        return {"verdict": "not run yet"}
    return compare([{metric: s} for s in first], [{metric: s} for s in second], metric, kind, margin)


def cell(result: dict, metric: str) -> str:
    """ "holds (+1.23 [0.80, 1.70] dB)" for a judged comparison."""
    if "difference" not in result:
        return result["verdict"]
    unit, scale = (" dB", 1) if metric == "psnr" else (" pts", 100)  # accuracies in points
    return (f"{result['verdict']} ({result['difference'] * scale:+.2f} "
            f"[{result['low'] * scale:+.2f}, {result['high'] * scale:+.2f}]{unit})")  # fmt: skip


def claim_line(title: str, per_task: dict[str, str]) -> str:
    return f"| {title} | " + "; ".join(f"**{task}**: {text}" for task, text in per_task.items()) + " |"


def versus(
    records, mtu: list[Run], other: list[Run], tasks, learned_tasks: dict[str, Learned], on_par_ok: bool
) -> dict[str, str]:
    """Per task and metric, MTU against another method ("beats"); `on_par_ok`: on par also satisfies the claim."""
    per_task = {}
    for task in tasks:
        if not learned_tasks[task].ok:
            per_task[task] = f"{UNDECIDABLE} ({learned_tasks[task].gap()})"
            continue
        parts = []
        for metric in metrics_of(task):
            result = judge(records, mtu, other, task, metric, "beats")
            if on_par_ok and result.get("verdict") == "on par":
                result = {**result, "verdict": "holds (on par)"}
            parts.append(f"{metric} {cell(result, metric)}")
        per_task[task] = ", ".join(parts)
    return per_task


def interference(records, pairs: list[Run], main: list[Run], learned_tasks: dict[str, Learned]) -> list[str]:
    """The paper: "sr and removal interfere; t2i and editing are compatible", from the pair runs.

    A pair interferes when, on at least one of its tasks, its model is worse than that task's
    single-task model beyond the margin ("does not hold" for the on-par comparison); it is compatible
    when on both tasks it is on par or better (no "does not hold", no "inconclusive").
    """
    lines = []
    for pair, claim in ((("sr", "remove"), "interfere"), (("t2i", "edit"), "are compatible")):
        title = f"{pair[0]} and {pair[1]} {claim}"
        missing = [t for t in pair if not learned_tasks.get(t) or not learned_tasks[t].ok]
        if missing:  # decided before any pair run: an unlearned task makes the claim undecidable
            lines.append(claim_line(title, {t: f"{UNDECIDABLE} ({learned_tasks[t].gap()})" if t in learned_tasks
                                            else UNDECIDABLE for t in missing}))  # fmt: skip
            continue
        runs = [r for r in pairs if r.tasks == pair]
        if not runs:
            lines.append(claim_line(title, {"+".join(pair): "not run (no pair runs in this plan)"}))
            continue
        verdicts, texts = [], {}
        for task in pair:
            single = [r for r in main if r.method == "single-task" and r.tasks == (task,)]
            for metric in metrics_of(task):
                result = judge(records, runs, single, task, metric, "beats")
                verdicts.append(result["verdict"])
                texts[f"{task} {metric}"] = cell(result, metric)
        worse, fine = "does not hold" in verdicts, all(v in ("holds", "on par") for v in verdicts)
        holds = worse if claim == "interfere" else fine
        decided = worse or fine
        verdict = "holds" if holds else "does not hold" if decided else "inconclusive"
        lines.append(claim_line(f"{pair[0]} and {pair[1]} {claim}: **{verdict}** (pair model vs single-task)", texts))
    return lines


def t2i_kept(records, mtu: list[Run], base: list[Run]) -> str:
    from mtu.reproduce.stats import T2I_KEPT_MARGIN

    result = judge(records, mtu, base, "t2i", "all_correct", "kept", T2I_KEPT_MARGIN)
    return claim_line(
        "T2I quality is kept (MTU vs the base, within 2 points)", {"t2i": f"all_correct {cell(result, 'all_correct')}"}
    )


def group(runs: list[Run], method: str, tasks: tuple[str, ...], experts: int = MAIN_EXPERTS) -> list[Run]:
    return [r for r in runs if r.method == method and r.tasks == tasks and r.num_experts == experts]
