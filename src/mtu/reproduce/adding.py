"""Issue 16's experiment in the reproduction: a task added later to a trained MTU model.

Per seed of the main table (`plan.adding_runs`): the new task (Shapes `colorize`) added to that seed's
trained 4-task MTU model and trained alone for S steps, only its own parts learning (method add-task);
the same task trained jointly with the four from the start (MTU on five tasks, 5 x S); and one more LoRA
adapter for it on the base at the main table's LoRA rank (S). RESULTS.md's section compares them with
the no-learning baseline (copy the grayscale input), with the protocol's bootstrap intervals
(`mtu.reproduce.stats`). It describes; it judges no claim of the paper.

The add-task run also records how far the old tasks moved: its denoiser against the extended model's on
the same random inputs, per old task. Zero is what the method guarantees (tests/core/test_add_task.py
checks it on tiny UNets and shapes-base); the record checks it on the very models the table scores.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mtu.data.shapes.baselines import BASELINES
from mtu.methods import Method
from mtu.reproduce.claims import aligned, cell, metrics_of, scores
from mtu.reproduce.plan import Run

OLD_TASK_INPUTS = 4  # random inputs per old task: a bit-identity check needs no more
READING = {  # the protocol's verdict rules at its margins (0.5 dB, 3 points), read as descriptions
    "holds": "add-task higher",
    "on par": "within the margin",
    "does not hold": "add-task lower beyond the margin",
    "inconclusive": "undecided",
}


def old_tasks_difference(pipe, extended: Path, inputs: int = OLD_TASK_INPUTS) -> dict[str, float]:
    """Per task the extended model serves: the largest |difference| between the denoiser outputs of
    `pipe` (the task added) and of the model in `extended`, on the same random inputs (0.0: identical)."""
    from mtu.pipelines import MTUPipeline

    added = pipe.unet
    original = MTUPipeline.from_pretrained(extended).unet.to(added.device)
    config = original.config
    generator = torch.Generator().manual_seed(0)
    found = {}
    for task in original.task_names:
        shape = (inputs, original.task_in_channels(task), config.sample_size, config.sample_size)
        sample = torch.randn(shape, generator=generator).to(added.device)
        text = torch.randn(inputs, 8, config.cross_attention_dim, generator=generator).to(added.device)
        timesteps = torch.randint(0, 1000, (inputs,), generator=generator).to(added.device)
        with torch.no_grad():
            outputs = [model(sample, timesteps, text, task=task).sample for model in (added, original)]
        found[task] = float((outputs[0] - outputs[1]).abs().max())
    return found


def _groups(runs: list[Run], task: str) -> dict[str, list[Run]]:
    """The runs behind each row for added task `task`: add-task, joint MTU (any run on it), LoRA."""
    return {
        method: [r for r in runs if r.method == method and task in r.tasks] for method in ("add-task", "mtu", "lora")
    }


def _labels(groups: dict[str, list[Run]], records: dict) -> dict[str, str]:
    added = groups["add-task"][0]  # the section is only written for tasks an add-task run adds
    extended, joint = added.extends.tasks, added.extends.tasks + added.tasks  # the joint run's, planned or not
    rank = next((records[r]["lora_rank"] for r in groups["lora"] if "lora_rank" in records.get(r, {})), None)
    return {
        "add-task": f"added to the trained {len(extended)}-task MTU model (add-task: S steps, only its own parts)",
        "mtu": f"jointly from the start (MTU on {len(joint)} tasks, {len(joint)} x S steps)",
        "lora": f"one more LoRA adapter on the base (rank {rank or 'of the main table'}, S steps)",
    }


def _mean_cell(values: list[list[float]], metric: str, seeds: bool = True) -> str:
    from mtu.reproduce.stats import mean_interval

    if not values:
        return "not run yet"
    result = mean_interval(values)
    digits = 2 if metric == "psnr" else 3
    found = f"{result['mean']:.{digits}f} [{result['low']:.{digits}f}, {result['high']:.{digits}f}]"
    return found + (f" ({len(values)} seed{'s' if len(values) > 1 else ''})" if seeds else "")


def _difference_cell(first: list[list[float]], second: list[list[float]], metric: str) -> str:
    from mtu.reproduce.stats import compare

    if not first or not second:
        return "not run yet"
    result = compare([{metric: s} for s in first], [{metric: s} for s in second], metric, "beats")
    return cell({**result, "verdict": READING[result["verdict"]]}, metric)


def _task_table(records: dict, runs: list[Run], task: str, baseline: dict | None) -> list[str]:
    metrics = metrics_of(task)
    groups = _groups(runs, task)
    labels = _labels(groups, records)
    found = {method: {m: scores(records, group, task, m) for m in metrics} for method, group in groups.items()}
    base = {m: [baseline["per_example"][m]] if baseline else [] for m in metrics}
    names = ["PSNR (dB)" if m == "psnr" else "all-correct" for m in metrics]
    lines = [f"**{task}** (test; mean [95% interval] over seeds and examples):", ""]
    lines += ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    cells = [_mean_cell(base[m], m, seeds=False) if baseline else "—" for m in metrics]
    what = f" ({BASELINES[task][0]})" if task in BASELINES else ""
    lines.append(f"| no-learning baseline{what} | " + " | ".join(cells) + " |")
    for method, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(_mean_cell(found[method][m], m) for m in metrics) + " |")
    lines += ["", "| difference (add-task - other) [95% interval] | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    texts = [_difference_cell(found["add-task"][m], base[m], m) for m in metrics]  # one row: a fixed reference
    lines.append("| add-task - no-learning baseline | " + " | ".join(texts) + " |")
    for label, method in (("jointly from the start", "mtu"), ("LoRA adapter", "lora")):
        texts = [_paired_cell(records, groups["add-task"], groups[method], task, m) for m in metrics]
        lines.append(f"| add-task - {label} | " + " | ".join(texts) + " |")
    return lines


def _paired_cell(records: dict, first: list[Run], second: list[Run], task: str, metric: str) -> str:
    """A difference paired by seed id; a seed missing on either side is named, not silently unpaired."""
    pairs = aligned(records, first, second, task, metric)
    if any(all(row is None for row in rows) for rows in (pairs.first, pairs.second)):
        return "not run yet"
    if pairs.missing:
        return "not compared (no scores from " + ", ".join(f"`{name}`" for name in pairs.missing) + ")"
    return _difference_cell(pairs.first, pairs.second, metric)


def _old_tasks(records: dict, runs: list[Run]) -> list[str]:
    done = [r for r in runs if r.method == Method.ADD_TASK and "old_tasks_max_abs_difference" in records.get(r, {})]
    if not done:
        return ["Old tasks after adding: not run yet."]
    parts = []
    for run in done:
        record = records[run]
        largest = max(record["old_tasks_max_abs_difference"].values())
        text = "bit-identical" if largest == 0 else f"largest |difference| {largest:.3g}"
        retrained = " (the extended model retrained: its record came from elsewhere)"
        parts.append(f"seed {run.seed}: {text}" + (retrained if record["extends"]["retrained"] else ""))
    tasks = ", ".join(next(iter(records[r]["old_tasks_max_abs_difference"] for r in done)))
    return [
        f"Old tasks after adding ({tasks}; the denoiser on {OLD_TASK_INPUTS} random inputs per task against the "
        "extended model's): " + "; ".join(parts) + "."
    ]


def adding_section(records: dict, runs: list[Run], baselines: dict[str, dict]) -> list[str]:
    """RESULTS.md's "Adding a task later" section: per added task, a row per method and the differences.

    `baselines`: each added task's no-learning baseline with its per-example scores (`per_example=True`).
    """
    added = list(dict.fromkeys(t for r in runs if r.method == Method.ADD_TASK for t in r.tasks))
    if not added:
        return ["Not in this plan."]
    lines = [
        "Issue 16: a task added to the main table's trained MTU model (same seed) and trained alone, against "
        "training it with the others from the start and against a LoRA adapter for it, each at S steps' worth "
        'of its examples. Differences are paired by seed and example; "within the margin" uses the '
        "protocol's margins (0.5 dB, 3 points). A description, not a claim of the paper (docs/reproduction.md).",
        "",
    ]
    for task in added:
        lines += [*_task_table(records, runs, task, baselines.get(task)), ""]
    return lines + _old_tasks(records, runs)
