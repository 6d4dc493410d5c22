"""RESULTS.md from the run records (protocol v2): pilot, baselines, claims with intervals, tables, figures.

Cells of the tables are means ± sample standard deviations over seeds; verdicts come from paired
bootstrap intervals over seeds and test examples (`mtu.reproduce.claims`, `mtu.reproduce.stats`).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from mtu.methods import Method
from mtu.reproduce.claims import (
    claim_line,
    group,
    interference,
    learned,
    metrics_of,
    scores,
    single_task,
    t2i_kept,
    versus,
)
from mtu.reproduce.plan import MAIN_EXPERTS, Run
from mtu.reproduce.report_v3 import levers_section, not_learned_section, router_pilot_section
from mtu.utils.outputs import write_text_atomic

V2_REPORT = "reproduction/v2/RESULTS.md"  # `mtu reproduce --protocol v2 --report-only --results` this, beside v3

METHODS = (("base", "base model"), ("single-task", "single-task models"), ("mtu", f"MTU (N={MAIN_EXPERTS})"),
           ("lora", "LoRA-FFN"), ("ia3", "IA3-FFN"), ("full", "full fine-tuning (one task each)"))  # fmt: skip


def _cell(records, runs: list[Run], task: str, metric: str) -> str:
    values = [statistics.mean(s) for s in scores(records, runs, task, metric)]
    if not values:
        return "—"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 2 if metric == "psnr" else 3
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def _columns(tasks) -> list[tuple[str, str]]:
    return [(task, metric) for task in tasks for metric in metrics_of(task)]


def _header(columns) -> list[str]:
    names = [f"{task} {'PSNR (dB)' if metric == 'psnr' else 'all-correct'}" for task, metric in columns]
    return ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]


def _method_runs(runs: list[Run], method: str, task: str, tasks: tuple[str, ...]) -> list[Run]:
    """The runs that give `method`'s numbers for `task`: its own single-task (or full) runs, else the
    multi-task runs on `tasks`."""
    if method != "base" and Method(method).one_task:
        return [r for r in runs if r.method == method and r.tasks == (task,)]
    if method == "base":
        return [r for r in runs if r.method == "base" and task in r.tasks]  # the base model's own task
    return group(runs, method, tasks)


def _main_table(records, tables, tasks, baselines, costs) -> list[str]:
    columns = _columns(tasks)
    lines = _header(columns)
    base_cells = [f"{baselines[t].get('psnr_hole', baselines[t][m]) if m == 'psnr' else baselines[t][m]:.3f}"
                  if t in baselines else "—" for t, m in columns]  # fmt: skip
    lines.append("| no-learning baseline (test) | " + " | ".join(base_cells) + " |")
    runs = tables["main"] + tables["deviation"]
    for method, label in METHODS:
        cells = [_cell(records, _method_runs(runs, method, t, tasks), t, m) for t, m in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| method | params | trainable | GFLOPs/call | CPU latency vs base |", "|---|---|---|---|---|"]
    for method, label in METHODS[:5]:
        cost = costs[method]
        lines.append(
            f"| {label} | {cost['params']:,} | {cost['trainable']:,} | {cost['gflops']:.3f} "
            f"| {cost['latency_ratio']:.2f}x |"
        )
    return lines


def _group_table(records, label_runs: list[tuple[str, list[Run]]], tasks) -> list[str]:
    if not tasks or not any(runs for _, runs in label_runs):
        return ["Not in this plan (--quick)."]
    columns = _columns(tasks)
    lines = _header(columns)
    for label, runs in label_runs:
        lines.append(f"| {label} | " + " | ".join(_cell(records, runs, t, m) for t, m in columns) + " |")
    return lines


def _claims(records, tables, tasks, learned_tasks) -> list[str]:
    main = tables["main"]
    mtu = group(main, "mtu", tasks)
    lines = [
        "| claim of the paper | verdict per task: difference (MTU - other) [95% interval; per seed] |",
        "|---|---|",
    ]
    for task, state in learned_tasks.items():
        status = "learned" if state.ok else "NOT learned"
        lines.append(
            "| single-task model beats its no-learning baseline by the pilot's bar (test) "
            f"| **{task}**: {status}: {state.gap()} |"
        )
    # On each task, MTU seed s against the single-task model of that task, seed s (issue 33: not every
    # task's single-task runs, which unpaired the seeds).
    single = {task: single_task(main, task) for task in tasks}
    lines.append(claim_line("MTU is on par with or better than the single-task models",
                            versus(records, mtu, single, tasks, learned_tasks, on_par_ok=True)))  # fmt: skip
    for method, label in (("lora", "LoRA-FFN"), ("ia3", "IA3-FFN")):
        adapters = dict.fromkeys(tasks, group(main, method, tasks))
        lines.append(claim_line(f"MTU beats {label}", versus(records, mtu, adapters, tasks, learned_tasks, False)))
    lines.append(t2i_kept(records, mtu, [r for r in main if r.method == "base"]))
    lines += interference(records, tables["pairs"], main, learned_tasks)
    return lines + ["", seeds_note(len(mtu))]


def seeds_note(seeds: int, level: float = 0.95) -> str:
    """What `seeds` training seeds can and cannot show, for the line under the claims table."""
    if seeds < 2:
        return ("One seed per method: the intervals resample test examples only; they say nothing of how "
                "another training seed would score.")  # fmt: skip
    chance, tail = seeds**-seeds, (1.0 - level) / 2.0
    if chance <= tail:
        return (f"With {seeds} seeds per method, the intervals resample seeds and test examples; the per-seed "
                "differences are beside each.")  # fmt: skip
    return (
        f"What {seeds} seeds can show: each interval resamples seeds and test examples, and a resample that "
        f"draws the same seed {seeds} times has probability 1/{seeds**seeds} = {chance:.1%}, more than the "
        f"{tail:.1%} each end of a {level:.0%} interval leaves out; so an interval's ends sit near its worst "
        "and best seeds' differences (printed beside it), give or take test-example noise. An interval that "
        f"clears zero or a margin says that each of these {seeds} seeds did, not that a further seed would: "
        f"the spread between training seeds is seen through {seeds} values only."
    )


def _pilot(pilot: dict | None, figures: Path) -> list[str]:
    from mtu.reproduce.pilot_figure import pilot_figure

    if not pilot:
        return ["The pilot has not run yet (`mtu reproduce --pilot`)."]
    choice = pilot["choice"]
    figure = pilot_figure(pilot, figures / "pilot.png")
    s = choice["S"]
    chosen = f"S = {s} steps per task, setting `{choice['setting']}`" if s else "no S yet: " + ", ".join(
        f"`{k}` never passed {v}" for k, v in choice["never_passed"].items())  # fmt: skip
    if s and choice.get("first_pass"):
        chosen += " (first passes: " + ", ".join(f"{t} {n:,}" for t, n in choice["first_pass"].items()) + ")"
    if choice.get("unlearned"):
        chosen += (f"; passed under no setting: {', '.join(choice['unlearned'])}, so every claim involving it is "
                   "undecidable at this budget (docs/reproduction.md, amendment)")  # fmt: skip
    return [f"Validation split, {pilot['protocol']['eval_samples']} examples per task; bar: baseline + "
            f"{pilot['protocol']['psnr_margin_db']} dB PSNR and all-correct >= {pilot['protocol']['all_correct_bar']}. "
            f"Chosen: {chosen}.", "", f"![pilot curves]({figures.name}/{figure.name})"]  # fmt: skip


def _router(records, tables, tasks, figures: Path) -> tuple[list[str], str]:
    import numpy as np

    from mtu.reproduce.routing import router_figure, router_summary

    runs = [r for r in group(tables["main"], "mtu", tasks) if "routing" in records.get(r, {})]
    if not runs:
        return ["Not run yet."], "not run yet"
    weights = [{name: np.array(w) for name, w in records[r]["routing"].items()} for r in runs]
    summary = router_summary(weights, list(tasks))
    figure = router_figure(summary, figures / "router_layers.png")
    lines = [f"![router per layer]({figures.name}/{figure.name})", "", *_router_table(summary, runs), ""]
    lines += [*_health_lines(records, runs, tasks), ""]
    return lines + [f"Verdict: **{summary['verdict']}**: {summary['reason']}."], summary["verdict"]


def _health_lines(records, runs: list, tasks) -> list[str]:
    """Router health per seed (DESIGN.md section 1): from the record's summary, or (records written before
    it was stored) from the router weights, where a dead layer cannot be told from its weights alone."""
    from mtu.evaluation.router_health import RouterHealth, layer_health

    lines = []
    for run in runs:
        summary = records[run].get("router_health")
        if summary is None:
            layers = [layer_health(name, w) for name, w in records[run]["routing"].items()]
            summary = {**RouterHealth(list(tasks), layers).summary(), "dead": "n/a"}
        lines.append(
            f"- seed {run.seed}: {summary['task_dependent']} of {summary['layers']} layers route by task "
            f"(JS >= {summary['js_threshold_bits']} bits), dead {summary['dead']}, saturated on one expert "
            f"for every task {summary['saturated']}; mean JS {summary['mean_js_bits']:.3f} bits"
        )
    return ["Router health per seed (`mtu.evaluation.router_health`; n/a: the record holds no pre-activations):",
            "", *lines]  # fmt: skip


def _router_table(summary: dict, runs: list) -> list[str]:
    """Per layer and seed: the across-task Jensen-Shannon divergence (bits; 0 = every task routes alike) and
    how many tasks give one expert >= the threshold (the figure shows which expert and how much)."""
    from mtu.evaluation.analysis import short_layer_name

    seeds, tasks = summary["seeds"], summary["tasks"]
    header = (
        ["layer"]
        + [f"JS s{run.seed} (bits)" for run in runs]
        + [f"tasks >= {summary['threshold']} s{run.seed}" for run in runs]
    )
    rows = []
    for index, layer in enumerate(summary["layers"]):
        js = [f"{round(seed['js'][index], 3) or 0.0:.3f}" for seed in seeds]  # or: rounding gives -0.0
        counts = [f"{sum(w >= summary['threshold'] for w in seed['top'][index])}/{len(tasks)}" for seed in seeds]
        rows.append("| " + " | ".join([short_layer_name(layer), *js, *counts]) + " |")
    agreement = summary["agreement"]
    total = len(summary["layers"]) * len(tasks)
    return [
        f"Cells (layer, task) with a top weight >= {summary['threshold']}: "
        + ", ".join(f"{count} of {total} (seed {run.seed})" for count, run in zip(summary["specialised_cells"], runs))
        + f"; of the {agreement['cells']} such in every seed, {agreement['agreeing']} pick the same expert in all"
        " seeds. JS: the across-task Jensen-Shannon divergence of a layer's router rows, in bits (0: every task"
        " routes alike; at most log2 min(tasks, experts), for tasks on disjoint experts).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *rows,
    ]


def _deviation(tables: dict, records: dict, figures: Path) -> tuple[list[str], str]:
    from mtu.evaluation.analysis import rank_deviations

    runs = [run for run in tables["deviation"] if "layer_deviations" in records.get(run, {})]
    if not runs:
        return ["Not run yet.", ""], "not run yet: -"
    # Per task, each layer's change averaged over the seeds' fine-tunes (numel / partial agree across seeds).
    by_task: dict[str, list[dict]] = {}
    for run in runs:
        by_task.setdefault(run.tasks[0], []).append(records[run]["layer_deviations"])
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
        findings.append(
            f"{label}: largest in `{first}` (mean rank {ranks[first]:.1f}), FFN {ranks.get('ffn', float('nan')):.1f}"
        )
    # Holds when FFN layers move most by both measures; inconclusive when the measures disagree.
    verdict = "holds" if all(ffn_first) else "does not hold" if not any(ffn_first) else "inconclusive"
    return lines, f"{verdict}: " + "; ".join(findings)


def write_report(path: Path, tables: dict, records: dict, base: dict, context: dict) -> Path:
    from mtu.data.shapes.baselines import BASELINES
    from mtu.data.shapes.tasks import TEST_SEED
    from mtu.evaluation.shapes_eval import evaluate_baseline
    from mtu.reproduce.costs import measure_costs

    tasks = next(r.tasks for r in tables["main"] if r.method == Method.MTU)
    samples = context["settings"]["eval_samples"]
    baselines = {t: evaluate_baseline(t, samples, TEST_SEED) for t in (*tasks, "inpaint") if t in BASELINES}
    learned_tasks = learned(records, tables["main"], baselines, tasks)
    figures = path.parent / f"{path.stem}_figures"
    figures.mkdir(parents=True, exist_ok=True)
    missing = [run.name for run in dict.fromkeys(r for runs in tables.values() for r in runs) if run not in records]
    costs = measure_costs(base["model"], tasks, MAIN_EXPERTS)
    lines = [
        *_preamble(base, context, missing),
        *router_pilot_section(context),
        *levers_section(context, figures),
        "## Pilot: choice of S",
        "",
        *_pilot(context["pilot"], figures),
        "",
        "## Claims",
        "",
        *_claims(records, tables, tasks, learned_tasks),
        "",
        *not_learned_section(context, learned_tasks),
        "## Main table (test)",
        "",
        *_main_table(records, tables, tasks, baselines, costs),
        "",
        *_other_tables(records, tables, tasks),
        *_adding(records, tables.get("adding", []), tasks, samples),
        *_figures(records, tables, tasks, figures),
    ]
    text = "\n".join(lines) + "\n"
    write_text_atomic(path, text)
    _remove_unused_figures(figures, text)
    return path


def _remove_unused_figures(figures: Path, text: str) -> None:
    """Delete the PNGs of `figures` that the report no longer shows (a section renamed or gone since the
    last report), so the folder holds exactly the report's figures."""
    for png in figures.glob("*.png"):
        if f"({figures.name}/{png.name})" not in text:
            png.unlink()


def _protocol_name(context: dict) -> str:
    protocol = context.get("protocol")
    return protocol.name if protocol is not None else "v2"


def _preamble(base: dict, context: dict, missing: list[str]) -> list[str]:
    settings, setting = context["settings"], context["setting"]
    lines = [
        f"# Results: the paper's claims re-checked (protocol {_protocol_name(context)})",
        "",
        f"Generated by `mtu reproduce` (do not edit by hand) on `{base['model']}`: "
        f"S = {settings['per_task']} optimizer steps per task (a run on k tasks trains k x S), batch "
        f"{base['data']['batch_size']}, learning-rate setting `{setting.name if setting else 'config default'}`, "
        f"{settings['eval_samples']} test examples per task, DDIM {settings['eval_steps']} steps. The protocol, "
        "fixed before any result, and how to read this page: `docs/reproduction.md`.",
        "",
    ]
    if _protocol_name(context) != "v2":
        lines += [f"Protocol v2's report, kept as history: `{V2_REPORT}`.", ""]
    if context.get("cut"):
        lines += [
            f"**Cut to fit the budget** (scope `{context['scope']}`; docs/reproduction.md): {len(context['cut'])} "
            "runs of the protocol's plan: " + ", ".join(f"`{n}`" for n in context["cut"]) + ".",
            "",
        ]
    if missing:
        lines += [
            f"**Incomplete**: {len(missing)} planned runs have no record yet and are left out: "
            + ", ".join(f"`{n}`" for n in missing)
            + ".",
            "",
        ]
    return lines


def _other_tables(records, tables, tasks) -> list[str]:
    extra_tasks = next((r.tasks for r in tables["extra"] if r.method == Method.MTU), ())
    experts = sorted({r.num_experts for r in tables["experts"]})
    pairs = list(dict.fromkeys(r.tasks for r in tables["pairs"]))
    extra = [
        ("MTU on all tasks", group(tables["extra"], "mtu", extra_tasks)),
        ("single-task", [r for r in tables["extra"] if r.method == Method.SINGLE_TASK]),
    ]
    return [
        "## Extra: mask inpainting (outside the paper's claims)",
        "",
        *_group_table(records, extra, extra_tasks[-1:]),
        "",
        "## Number of experts",
        "",
        *_group_table(records, [(f"N = {n}", group(tables["experts"], "mtu", tasks, n)) for n in experts], tasks),
        "",
        "## Task pairs (2 x S steps each)",
        "",
        *_group_table(records, [(" + ".join(p), group(tables["pairs"], "mtu", p)) for p in pairs], tasks),
        "",
    ]


def _adding(records, runs: list[Run], tasks, samples: int) -> list[str]:
    """Issue 16's section: a task added later, beside its baseline (per-example scores, for intervals)."""
    from mtu.data.shapes.baselines import BASELINES
    from mtu.data.shapes.tasks import TEST_SEED
    from mtu.evaluation.shapes_eval import evaluate_baseline
    from mtu.reproduce.adding import adding_section

    added = list(dict.fromkeys(t for r in runs if r.method == Method.ADD_TASK for t in r.tasks if t not in tasks))
    baselines = {t: evaluate_baseline(t, samples, TEST_SEED, per_example=True) for t in added if t in BASELINES}
    title = f"## Adding a task later ({', '.join(added)})" if added else "## Adding a task later"
    return [title, "", *adding_section(records, runs, baselines), ""]


def _figures(records, tables, tasks, figures: Path) -> list[str]:
    router_lines, _ = _router(records, tables, tasks, figures)
    deviation_lines, verdict = _deviation(tables, records, figures)
    name, findings = verdict.split(":", 1)
    return [
        "## Router weights per layer (Fig. 5)",
        "",
        *router_lines,
        "",
        "## Which layers full fine-tuning changes most (Fig. 2)",
        "",
        f"Verdict (FFN layers change most): **{name}**:{findings}",
        "",
        *deviation_lines,
    ]
