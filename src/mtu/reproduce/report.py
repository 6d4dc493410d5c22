"""RESULTS.md from the reproduction's runs: tables, figures, and a verdict line per claim of the paper.

Every number is the mean over seeds with its spread (sample standard deviation; "±0" with one seed).
A claim "holds" when the comparison goes the paper's way by more than the spreads (plus, for
accuracies, the evaluation's sampling error), "does not hold" when it goes the other way by as much,
and is "inconclusive" otherwise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from mtu.evaluation.shapes_metrics import headline_metric
from mtu.reproduce.plan import MAIN_EXPERTS, Run

# The figure each task is compared on: attribute accuracy for t2i, PSNR (dB) against the exact target otherwise.
METHOD_LABELS = {"base": "base model", "single-task": "single-task models", "mtu": f"MTU (N={MAIN_EXPERTS})",
                 "lora": "LoRA-FFN", "ia3": "IA3-FFN"}


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    mean, spread = _stats(values)
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _headline(metrics: dict, runs: list[Run], task: str) -> list[float]:
    return [metrics[run]["tasks"][task][headline_metric(task)] for run in runs if task in metrics[run]["tasks"]]


def _verdict(better: list[float], worse: list[float], noise: float = 0.0) -> str:
    """Does `better` beat `worse`? "holds" / "does not hold" / "inconclusive".

    The difference must exceed the two seed spreads plus `noise`, the evaluation's own sampling error
    (seeds change the training, not the held-out set, so the spreads cannot show it).
    """
    if not better or not worse:
        return "not run yet"
    (b, sb), (w, sw) = _stats(better), _stats(worse)
    if len(better) < 2 or len(worse) < 2:
        return "inconclusive (one seed)"
    if b - w > sb + sw + noise:
        return "holds"
    if w - b > sb + sw + noise:
        return "does not hold"
    return "inconclusive"


def _evaluation_noise(task: str, values: list[float], samples: int) -> float:
    """Standard error of a difference of two accuracies over `samples` examples (0 for PSNR: its
    per-example spread is not stored, and a mean over 64 examples moves far less than the seeds do)."""
    if headline_metric(task) != "all_correct" or not values:
        return 0.0
    p = statistics.mean(values)
    return math.sqrt(2 * p * (1 - p) / samples)


def _main_rows(tables: dict, metrics: dict) -> dict[str, dict[str, list[Run]]]:
    """method label -> task -> the runs that provide that task's numbers."""
    rows: dict[str, dict[str, list[Run]]] = {}
    for run in tables["main"]:
        label = METHOD_LABELS[run.method]
        for task in run.scored:
            rows.setdefault(label, {}).setdefault(task, []).append(run)
    return rows


def _tasks(tables: dict) -> tuple[str, ...]:
    """The compared tasks: those of the main MTU run."""
    return next(run.tasks for run in tables["main"] if run.method == "mtu")


def _scored(tables: dict) -> tuple[str, ...]:
    """The compared scores: the main MTU run's tasks, sr and inpaint also from the image alone."""
    return next(run.scored for run in tables["main"] if run.method == "mtu")


def _main_table(tables: dict, metrics: dict, costs: dict[str, dict]) -> list[str]:
    rows = _main_rows(tables, metrics)
    tasks = _scored(tables)
    header = [f"{task} ({headline_metric(task)})" for task in tasks] + ["params", "trainable", "GFLOPs/call",
                                                                  "CPU latency vs base"]
    lines = ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    methods = {label: method for method, label in METHOD_LABELS.items()}
    for label, by_task in rows.items():
        cells = [_cell(_headline(metrics, by_task.get(task, []), task)) for task in tasks]
        cost = costs[methods[label]]
        cells += [f"{cost['params']:,}", f"{cost['trainable']:,}" + (" per task (t2i)" if label.startswith("single") else ""),
                  f"{cost['gflops']:.3f}", f"{cost['latency_ratio']:.2f}x"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


@torch.no_grad()
def measure_costs(base_model: str, tasks: tuple[str, ...], num_experts: int, repeats: int = 15) -> dict[str, dict]:
    """Params, trainable params, GFLOPs and CPU latency (relative to the base) of each method's denoiser.

    Every model is built from the base UNet here (trained weights do not change the cost) and the
    models are timed alternately in this process, one t2i call at batch 1 each, so the ratios are
    measured side by side whatever machine each run trained on.
    """
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTokenizer

    from mtu.assets import resolve_model_path
    from mtu.config import MTUConfig
    from mtu.training.methods import AdapterSpec, activate, build_model, parameter_counts

    path = resolve_model_path(base_model)

    def base_unet():
        return UNet2DConditionModel.from_pretrained(path, subfolder="unet").eval()

    config = MTUConfig(tasks=list(tasks), num_experts=num_experts)
    rank = parameter_counts(base_unet().config, config)["lora_rank"]
    models = {
        "base": base_unet(),
        "single-task": build_model(base_unet(), "single-task", MTUConfig(tasks=["t2i"], num_experts=num_experts)),
        "mtu": build_model(base_unet(), "mtu", config),
        "lora": build_model(base_unet(), "lora", config, AdapterSpec("lora", rank)),
        "ia3": build_model(base_unet(), "ia3", config, AdapterSpec("ia3")),
    }
    for name in ("lora", "ia3"):
        activate(models[name], "t2i")
    unet = models["base"]
    size, length = unet.config.sample_size, CLIPTokenizer.from_pretrained(path, subfolder="tokenizer").model_max_length
    sample = torch.randn(1, unet.config.in_channels, size, size)
    text = torch.randn(1, length, unet.config.cross_attention_dim)
    timestep = torch.tensor([500])
    calls = {name: (lambda m=model, kw={} if name == "base" else {"task": "t2i"}: m(sample, timestep, text, **kw))
             for name, model in models.items()}  # fmt: skip
    costs = {}
    for name, call in calls.items():
        with FlopCounterMode(display=False) as counter:
            call()
        trainable = 0 if name == "base" else sum(p.numel() for p in models[name].parameters() if p.requires_grad)
        costs[name] = {"params": sum(p.numel() for p in models[name].parameters()), "trainable": trainable,
                       "gflops": counter.get_total_flops() / 1e9, "times": []}  # fmt: skip
    for repeat in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if repeat:  # the first round warms up
                costs[name]["times"].append(time.perf_counter() - start)
    base_time = statistics.median(costs["base"]["times"])
    for cost in costs.values():
        cost["latency_ratio"] = statistics.median(cost.pop("times")) / base_time
    return costs


def _experts_table(tables: dict, metrics: dict) -> tuple[list[str], int]:
    counts, tasks = sorted({run.num_experts for run in tables["experts"]}), _scored(tables)
    lines = ["| N | " + " | ".join(f"{t} ({headline_metric(t)})" for t in tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    scores = {}
    for n in counts:
        runs = [run for run in tables["experts"] if run.num_experts == n]
        lines.append(f"| {n} | " + " | ".join(_cell(_headline(metrics, runs, t)) for t in tasks) + " |")
        scores[n] = _normalised_score(metrics, runs, tables["experts"], tasks)
    return lines, max(scores, key=scores.get)


def _normalised_score(metrics: dict, runs: list[Run], pool: list[Run], tasks: tuple[str, ...]) -> float:
    """Mean over tasks of the headline, each task min-max normalised over `pool` (so PSNR and accuracy mix)."""
    scores = []
    for task in tasks:
        values, ours = _headline(metrics, pool, task), _headline(metrics, runs, task)
        if ours:  # a task not scored yet (a partial cache) counts for no one
            low, high = min(values), max(values)
            scores.append((statistics.mean(ours) - low) / ((high - low) or 1.0))
    return statistics.mean(scores) if scores else float("nan")


def _pairs_table(tables: dict, metrics: dict) -> list[str]:
    if not tables["pairs"]:
        return ["Skipped in --quick mode."]
    all_runs = [r for r in tables["pairs"] if r.tasks == _tasks(tables)]
    lines = ["| tasks trained | each score: trained on the pair / on all tasks |", "|---|---|"]
    for pair in dict.fromkeys(r.tasks for r in tables["pairs"] if r.tasks != _tasks(tables)):
        runs = [r for r in tables["pairs"] if r.tasks == pair]
        cells = [f"{t}: {_cell(_headline(metrics, runs, t))} / {_cell(_headline(metrics, all_runs, t))}" for t in runs[0].scored]
        lines.append(f"| {' + '.join(pair)} | " + "; ".join(cells) + " |")
    return lines


def _deviation(tables: dict, metrics: dict, figures: Path) -> tuple[list[str], str]:
    from mtu.evaluation.analysis import rank_deviations

    if not tables["deviation"]:
        return ["Not run yet.", ""], "not run yet: -"
    # Per task, each layer's change averaged over the seeds' fine-tunes (numel / partial agree across seeds).
    by_task: dict[str, list[dict]] = {}
    for run in tables["deviation"]:
        by_task.setdefault(run.tasks[0], []).append(metrics[run]["layer_deviations"])
    deviations = {
        task: {name: (statistics.mean(seed[name][0] for seed in seeds), *seeds[0][name][1:]) for name in seeds[0]}
        for task, seeds in by_task.items()
    }
    lines, findings, ffn_first = [], [], []
    for measure in ("per_parameter", "raw"):
        analysis = rank_deviations(deviations, measure=measure)
        figure = analysis.plot(figures / f"deviation_{measure}.png")
        lines += ["```", analysis.table(), "```", f"![deviation {measure}]({figures.name}/{figure.name})", ""]
        ranks = analysis.component_ranks()
        first = next(iter(ranks))
        ffn_first.append(first == "ffn")
        label = "per-parameter RMS change" if measure == "per_parameter" else "raw L2 change (the paper's)"
        findings.append(f"{label}: largest in `{first}` (mean rank {ranks[first]:.1f}), FFN {ranks.get('ffn', float('nan')):.1f}")
    # Holds when FFN layers move most by both measures; inconclusive when the measures disagree.
    verdict = "holds" if all(ffn_first) else "does not hold" if not any(ffn_first) else "inconclusive"
    return lines, f"{verdict}: " + "; ".join(findings)


def _router(tables: dict, metrics: dict, figures: Path) -> tuple[list[str], str]:
    from mtu.evaluation.analysis import router_analysis

    run = next((r for r in tables["main"] if r.method == "mtu"), None)
    if run is None:
        return ["Not run yet.", ""], "not run yet: -"
    routing = {name: torch.tensor(weights) for name, weights in metrics[run]["routing"].items()}
    analysis = router_analysis(routing, list(run.tasks))
    figure = analysis.plot(figures / "router.png")
    verdict = ("holds" if analysis.specialists() else "does not hold") + f": {analysis.summary()}"
    return [f"![router]({figures.name}/{figure.name})", "", analysis.summary(), ""], verdict


def _claims(tables: dict, metrics: dict, best_n: int, deviation: str, router: str, samples: int) -> list[str]:
    found = {label: defaultdict(list, by_task) for label, by_task in _main_rows(tables, metrics).items()}
    rows = defaultdict(lambda: defaultdict(list), found)  # runs not finished yet: empty lists
    mtu, single = rows[METHOD_LABELS["mtu"]], rows[METHOD_LABELS["single-task"]]
    base_t2i = _headline(metrics, rows[METHOD_LABELS["base"]]["t2i"], "t2i")
    tasks = _scored(tables)
    def compare(task: str, other: dict) -> str:
        ours, theirs = _headline(metrics, mtu[task], task), _headline(metrics, other[task], task)
        return _verdict(ours, theirs, _evaluation_noise(task, ours + theirs, samples))

    on_par = {t: compare(t, single) for t in tasks}
    lines = ["| claim of the paper | verdict on this model | numbers |", "|---|---|---|"]
    lines.append("| MTU is on par with or better than single-task models on every task | "
                 f"{_combine(on_par.values(), on_par_claim=True)} | " + "; ".join(f"{t}: {v}" for t, v in on_par.items()) + " |")
    for method in ("lora", "ia3"):
        other = rows[METHOD_LABELS[method]]
        per_task = {t: compare(t, other) for t in tasks}
        lines.append(f"| MTU beats {METHOD_LABELS[method]} | {_combine(per_task.values())} | "
                     + "; ".join(f"{t}: {v}" for t, v in per_task.items()) + " |")
    kept = _headline(metrics, mtu["t2i"], "t2i")
    noise = _evaluation_noise("t2i", base_t2i + kept, samples)
    if base_t2i and kept:
        drop = statistics.mean(base_t2i) - statistics.mean(kept)
        kept_verdict = "holds" if drop <= 0.02 else "does not hold" if drop > 0.02 + noise else "inconclusive"
    else:
        kept_verdict = "not run yet"
    lines.append(f"| T2I quality is kept (within 2 points of the base) | {kept_verdict} | "
                 f"base {_cell(base_t2i)}, MTU {_cell(kept)} (all attributes correct; evaluation noise "
                 f"±{noise:.3f} over {samples} captions) |")
    lines.append(f"| The best number of experts depends on the model (4 for SDv1.5, 1 for SDXL) | "
                 f"best N here: {best_n} | see the experts table |")
    lines.append(f"| The router specialises experts per task (Fig. 5) | {router.split(':')[0]} | {router.split(':', 1)[1]} |")
    lines.append(f"| Fine-tuning changes FFN layers more than any other component (Fig. 2) | "
                 f"{deviation.split(':')[0]} | {deviation.split(':', 1)[1]} |")
    return lines


def _combine(verdicts, on_par_claim: bool = False) -> str:
    verdicts = list(verdicts)
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    if on_par_claim and all(v in ("holds", "inconclusive") for v in verdicts):
        return "holds"  # on par = not worse by more than the spread
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


def write_report(path: Path, tables: dict, metrics: dict, out: Path, base_model: str, settings: dict, seconds: float) -> Path:
    missing = [run.name for runs in tables.values() for run in runs if run not in metrics]
    tables = {name: [run for run in runs if run in metrics] for name, runs in tables.items()}
    figures = path.parent / f"{path.stem}_figures"
    figures.mkdir(parents=True, exist_ok=True)
    costs = measure_costs(base_model, _tasks(tables), MAIN_EXPERTS)
    experts, best_n = _experts_table(tables, metrics)
    deviation_lines, deviation_verdict = _deviation(tables, metrics, figures)
    router_lines, router_verdict = _router(tables, metrics, figures)
    seeds = sorted({run.seed for run in tables["main"]})
    devices: dict[str, list[float]] = {}
    for result in metrics.values():
        devices.setdefault(result.get("device", "cpu"), []).append(result.get("seconds", float("nan")))
    compute = ", ".join(f"{len(times)} runs on {device} ({sum(times) / 60:.1f} min)" for device, times in sorted(devices.items()))
    lines = [
        "# Results: the paper's claims re-checked",
        "",
        f"Generated by `mtu reproduce` (do not edit by hand) on `{base_model}`: {settings['steps']} optimizer steps "
        f"per run, {settings['eval_samples']} held-out Shapes examples per task, seeds {seeds}. Compute, summed "
        f"over runs (training + evaluation, each timed where it ran): {compute}; the last invocation took "
        f"{seconds / 60:.1f} minutes (runs cached in `{out}` are reused, not re-timed). Cells: mean ± sample "
        "standard deviation over seeds. Headline metrics: t2i = all attributes correct (parser); other tasks = PSNR "
        "(dB) against the exact target. \"(image only)\": sr / inpaint scored with empty prompts (a Shapes caption "
        "names the whole scene, so with it a good base answers them without reading the image).",
        "",
        *([f"**Incomplete**: {len(set(missing))} planned runs have not finished and are left out: "
           + ", ".join(f"`{name}`" for name in dict.fromkeys(missing)) + ".", ""] if missing else []),
        "What the verdicts mean and what may cause them: `docs/reproduction.md` (written by people; this page is not).",
        "",
        "## Claims",
        "",
        *_claims(tables, metrics, best_n, deviation_verdict, router_verdict, settings["eval_samples"]),
        "",
        "## Main table",
        "",
        *_main_table(tables, metrics, costs),
        "",
        "Cost columns: each method's denoiser built from the base by this command and measured side by side on "
        f"this machine's CPU ({torch.get_num_threads()} thread(s)): one t2i call at batch 1, timed alternately "
        "(median of 15). The base row is the original UNet; single-task is one task's model (t2i).",
        "",
        "## Number of experts",
        "",
        *experts,
        "",
        "## Task interference: each pair of tasks vs all tasks",
        "",
        *_pairs_table(tables, metrics),
        "",
        "## Which layers fine-tuning changes most (Fig. 2)",
        "",
        "Each task fine-tunes every denoiser weight; layers are ranked by ||theta_ft - theta_pre||, per parameter "
        "(RMS change: the verdict) and raw (L2, favours large layers). Rank 1 = largest change.",
        "",
        *deviation_lines,
        "## Router weights (Fig. 5)",
        "",
        *router_lines,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
