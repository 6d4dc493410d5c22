"""The paper's claims judged from run records (protocol v2): a verdict per task, with its interval.

A verdict compares two groups of runs on one task and one metric with a paired bootstrap over seeds
and test examples (`mtu.reproduce.stats`), against margins fixed before any result: 0.5 dB PSNR,
3 points of accuracy, 2 points for "T2I quality is kept". A task whose single-task model does not
clear the pilot's bar on test (its no-learning baseline + 2 dB PSNR and parser all-correct >= 0.5)
has not been learned: every claim involving it says "undecidable at this budget", with the gap.

Runs are paired by seed id: the single-task model of a task, seed s, against MTU seed s. A seed with no
record on either side is not dropped (that would silently unpair the rest): the comparison is refused
and the report names the missing runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mtu.methods import Method
from mtu.reproduce.plan import MAIN_EXPERTS, Run
from mtu.reproduce.thresholds import ALL_CORRECT_BAR, PSNR_MARGIN_DB

UNDECIDABLE = "undecidable at this budget"
NOT_COMPARED = "not compared"


def metrics_of(task: str) -> tuple[str, ...]:
    """The headlines a task is judged by: parser all-correct, and PSNR for tasks with an input image
    (a target to compare against exactly; generation from text alone has none)."""
    from mtu.config import BUILTIN_TASKS

    return ("all_correct",) if BUILTIN_TASKS[task].conditioning == "none" else ("psnr", "all_correct")


def _row(records: dict[Run, dict], run: Run, task: str, metric: str) -> list[float] | None:
    """`run`'s per-example scores of `task`, or None without a record; PSNR inside the hole where there is one."""
    per_example = records.get(run, {}).get("tasks", {}).get(task, {}).get("per_example")
    key = "psnr_hole" if metric == "psnr" and per_example and "psnr_hole" in per_example else metric
    return per_example[key] if per_example and key in per_example else None  # t2i has no PSNR


def scores(records: dict[Run, dict], runs: list[Run], task: str, metric: str) -> list[list[float]]:
    """Per-example scores of `task`, one list per run (seed) that has them: for table cells, which show
    how many seeds they average; comparisons use `aligned`, which names what is missing instead."""
    rows = [_row(records, run, task, metric) for run in runs]
    return [row for row in rows if row is not None]


def single_task(runs: list[Run], task: str) -> list[Run]:
    """The single-task model of `task`, one run per seed: what MTU is compared with on `task`."""
    return [r for r in runs if r.method == Method.SINGLE_TASK and r.tasks == (task,)]


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
        single = single_task(main, task)
        base = baselines.get(task)
        base_psnr = base.get("psnr_hole", base.get("psnr")) if base else None
        found[task] = Learned(
            task, mean_of(records, single, task, "psnr"), mean_of(records, single, task, "all_correct"), base_psnr
        )
    return found


@dataclass
class Aligned:
    """Two groups' scores on one task and metric (None: no scores), row s of each the same seed if paired."""

    seeds: list[int]  # the seeds of the first group, in order
    first: list[list[float] | None]
    second: list[list[float] | None]
    missing: list[str]  # the runs whose scores are None


def _by_seed(runs: list[Run], task: str) -> dict[int, Run]:
    found: dict[int, Run] = {}
    for run in runs:
        if run.seed in found:  # e.g. every task's single-task runs passed as one group
            raise ValueError(
                f"two runs of seed {run.seed} in one group compared on {task} ({found[run.seed].name}, "
                f"{run.name}): pass one run per seed, e.g. `single_task(runs, {task!r})`"
            )
        found[run.seed] = run
    return found


def aligned(records, a: list[Run], b: list[Run], task: str, metric: str, paired: bool = True) -> Aligned:
    """The scores of groups `a` and `b`. Paired: for each seed of `a`, `a`'s run and `b`'s run of that seed
    (b's other seeds are not `a`'s: a pair model's two seeds against the single-task model's three).
    Unpaired: every run of each group. A run without scores is listed in `missing`, never skipped."""
    first, second = _by_seed(a, task), _by_seed(b, task)
    seeds = sorted(first)
    seeds_b = seeds if paired else sorted(second)
    runs = [first[seed] for seed in seeds] + [second.get(seed) for seed in seeds_b]
    rows = [_row(records, run, task, metric) if run else None for run in runs]
    names = [
        run.name if run else f"seed {seed} of the other group (no run)" for seed, run in zip(seeds + seeds_b, runs)
    ]
    missing = [name for name, row in zip(names, rows) if row is None]
    return Aligned(seeds, rows[: len(seeds)], rows[len(seeds) :], missing)


def judge(
    records,
    a: list[Run],
    b: list[Run],
    task: str,
    metric: str,
    kind: str,
    margin: float | None = None,
    paired: bool = True,
) -> dict:
    """One verdict: group `a` against group `b` ("beats": a better than b; "kept": a not worse than b),
    paired by seed unless `paired` is False. "not run yet" when a group has no scores at all; "not
    compared" (with the runs in "missing") when some are missing."""
    from mtu.reproduce.stats import compare

    pairs = aligned(records, a, b, task, metric, paired)
    if all(row is None for row in pairs.first) or all(row is None for row in pairs.second):
        return {"verdict": "not run yet"}
    if pairs.missing:
        return {"verdict": NOT_COMPARED, "missing": pairs.missing}
    first, second = [{metric: s} for s in pairs.first], [{metric: s} for s in pairs.second]
    result = compare(first, second, metric, kind, margin, paired=paired)
    return {**result, "seed_ids": pairs.seeds}


def cell(result: dict, metric: str) -> str:
    """ "holds (+1.23 [+0.80, +1.70] dB; per seed 0/1/2: +1.1 / ...)" for a judged comparison."""
    if "missing" in result:
        names = ", ".join(f"`{name}`" for name in result["missing"])
        return f"{result['verdict']} (no scores from {names}: a comparison drops no seed)"
    if "difference" not in result:
        return result["verdict"]
    unit, scale = (" dB", 1) if metric == "psnr" else (" pts", 100)  # accuracies in points
    text = (f"{result['verdict']} ({result['difference'] * scale:+.2f} "
            f"[{result['low'] * scale:+.2f}, {result['high'] * scale:+.2f}]{unit}")  # fmt: skip
    if result.get("per_seed") and len(result["per_seed"]) > 1:
        which = " " + "/".join(str(seed) for seed in result["seed_ids"]) if "seed_ids" in result else ""
        text += f"; per seed{which}: " + " / ".join(f"{d * scale:+.2f}" for d in result["per_seed"])
    if result.get("paired") is False:
        text += "; seeds unpaired"
    return text + ")"


def claim_line(title: str, per_task: dict[str, str]) -> str:
    return f"| {title} | " + "; ".join(f"**{task}**: {text}" for task, text in per_task.items()) + " |"


def versus(
    records, mtu: list[Run], others: dict[str, list[Run]], tasks, learned_tasks: dict[str, Learned], on_par_ok: bool
) -> dict[str, str]:
    """Per task and metric, MTU against another method ("beats"), paired by seed: `others[task]` holds the
    runs MTU is compared with on `task`, one per seed (the single-task model of `task`, or the multi-task
    adapter runs). `on_par_ok`: on par also satisfies the claim."""
    per_task = {}
    for task in tasks:
        if not learned_tasks[task].ok:
            per_task[task] = f"{UNDECIDABLE} ({learned_tasks[task].gap()})"
            continue
        parts = []
        for metric in metrics_of(task):
            result = judge(records, mtu, others[task], task, metric, "beats")
            if on_par_ok and result.get("verdict") == "on par":
                result = {**result, "verdict": "holds (on par)"}
            parts.append(f"{metric} {cell(result, metric)}")
        per_task[task] = ", ".join(parts)
    return per_task


def interference(records, pairs: list[Run], main: list[Run], learned_tasks: dict[str, Learned]) -> list[str]:
    """The paper: "sr and removal interfere; t2i and editing are compatible", from the pair runs.

    A pair interferes when, on at least one of its tasks, its model is worse than that task's
    single-task model beyond the margin ("does not hold" for the on-par comparison); it is compatible
    when on both tasks it is on par or better (no "does not hold", no "inconclusive"). The pair model's
    seeds are compared with the single-task model's runs of the same seeds.
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
            for metric in metrics_of(task):
                result = judge(records, runs, single_task(main, task), task, metric, "beats")
                verdicts.append(result["verdict"])
                texts[f"{task} {metric}"] = cell(result, metric)
        worse, fine = "does not hold" in verdicts, all(v in ("holds", "on par") for v in verdicts)
        holds = worse if claim == "interfere" else fine
        decided = worse or fine
        undecided = NOT_COMPARED if NOT_COMPARED in verdicts else "inconclusive"
        verdict = "holds" if holds else "does not hold" if decided else undecided
        lines.append(claim_line(f"{pair[0]} and {pair[1]} {claim}: **{verdict}** (pair model vs single-task)", texts))
    return lines


def t2i_kept(records, mtu: list[Run], base: list[Run]) -> str:
    from mtu.reproduce.stats import T2I_KEPT_MARGIN

    # Unpaired, and said so: the base model trains on no seed, its one run is the reference for every MTU seed.
    result = judge(records, mtu, base, "t2i", "all_correct", "kept", T2I_KEPT_MARGIN, paired=False)
    title = "T2I quality is kept (MTU vs the base, within 2 points; unpaired: the base has one untrained run)"
    return claim_line(title, {"t2i": f"all_correct {cell(result, 'all_correct')}"})


def group(runs: list[Run], method: str, tasks: tuple[str, ...], experts: int = MAIN_EXPERTS) -> list[Run]:
    return [r for r in runs if r.method == method and r.tasks == tasks and r.num_experts == experts]
