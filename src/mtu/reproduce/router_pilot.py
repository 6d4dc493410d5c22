"""Protocol v3's multi-task pilot: which router recipe keeps routing task-dependent (docs/reproduction.md).

A single-task pilot cannot see routing (one task: nothing to route between), so v3 chooses its router
recipe from MTU runs on the paper's four tasks, on the validation split only. Pre-registered before any
result (docs/reproduction.md, "Protocol v3"):

- every candidate trains MTU (N = 4) on t2i, edit, sr, remove with configs/reproduce.yaml, seed 0, learning
  rate 1e-3 with x10 on `conv_in` only (task embeddings and routers at the base rate), for 4 x S steps
  (S = 2,000, v2's), constant rate after warm-up; checkpoints every `every` steps are scored on validation
  (each task's headline scores, as the v2 pilot) and read for router health over the four tasks;
- the choice reads the last checkpoint: the first candidate in `CANDIDATES` order that (a) passes the bar
  (`pilot.passes`) on every task v2 learned (t2i, sr, remove), (b) keeps t2i all-correct within
  `T2I_KEEP` of the base model's on the same validation prompts, and (c) has >= `MIN_TASK_DEPENDENT` of its
  layers task-dependent with none dead and none saturated (`mtu.evaluation.router_health`);
- if none passes all three: the first passing (a) and (c) (t2i kept is then judged on test as it falls);
  if none passes (a) and (c): candidate 1, the paper's router, and the report says routing health failed.

A run is resumable: its curve (`curve.json` in its folder) grows one point per chunk, and the curves are
copied into the committed `reproduction/router_pilot.json` after every chunk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtu.config import write_text_atomic
from mtu.reproduce.pilot import PILOT_TASKS, curve_config, passes, score_checkpoint, validation_baselines

LEARNED_TASKS = ("t2i", "sr", "remove")  # passed the v2 pilot on validation; edit passed under no setting
T2I_KEEP = 0.02
MIN_TASK_DEPENDENT = 7
RECORD_FILE = Path("reproduction") / "router_pilot.json"
FULL = {"max_steps": 8000, "every": 2000, "eval_samples": 256, "eval_steps": 25}
QUICK = {"max_steps": 4, "every": 2, "eval_samples": 4, "eval_steps": 2}
SHARED = {"train.learning_rate": 1e-3, "train.lr_multipliers": {"conv_in": 10.0}}


@dataclass(frozen=True)
class Recipe:
    """A candidate router recipe: overrides of configs/reproduce.yaml on top of `SHARED`."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    why: str = ""


# The declared order (pre-registered): the paper's router first, then one change at a time on the no-bias router.
CANDIDATES = (
    Recipe("paper-1x", {}, "the paper's router; routers and task embeddings at the base rate (v2 had x10)"),
    Recipe(
        "nobias", {"mtu.router_bias": False}, "no shared last-layer bias: no router update is the same for all tasks"
    ),
    Recipe(
        "nobias-gatedrop",
        {"mtu.router_bias": False, "mtu.gate_dropout": 0.1},
        "+ gate dropout 0.1 (Zhao et al. 2019: against gate polarisation)",
    ),
    Recipe(
        "nobias-zloss",
        {"mtu.router_bias": False, "train.router_z_loss": 1e-3},
        "+ router z-loss 1e-3 (ST-MoE: against saturation)",
    ),
)


def recipe_config(recipe: Recipe, base: dict, folder: Path, pilot: dict):
    tasks = {task: base["tasks"][task] for task in PILOT_TASKS}
    return curve_config(base, folder, pilot, {"method": "mtu", "tasks": tasks, **SHARED, **recipe.overrides})


def score_point(model: Path, pilot: dict, device: str) -> dict:
    """Every pilot task's headline scores on validation and the router health over them."""
    from mtu.evaluation.router_health import router_health
    from mtu.pipelines import MTUPipeline

    point = {task: score_checkpoint(model, task, pilot, device) for task in PILOT_TASKS}
    health = router_health(MTUPipeline.from_pretrained(model).unet, PILOT_TASKS)
    return {**point, "router_health": health.to_dict()}


def run_recipe(recipe: Recipe, folder: Path, base: dict, pilot: dict, device: str, deadline: float) -> dict:
    """Train `recipe` chunk by chunk (`every` steps each), scoring each checkpoint, until `max_steps` or until
    the next chunk would end after `deadline`; returns its curve record."""
    from mtu.reproduce.jobs import RunInterrupted
    from mtu.training import train
    from mtu.training.checkpoint import list_checkpoints, step_of

    curve_file = folder / "curve.json"
    record = json.loads(curve_file.read_text()) if curve_file.is_file() else None
    record = record or {"recipe": recipe.name, "device": device, "curve": {}, "seconds": 0.0}
    config = recipe_config(recipe, base, folder, pilot)
    chunk_seconds = 0.0
    while True:
        found = list_checkpoints(folder / "train")
        done = step_of(found[-1]) if found else 0
        unscored = done and done % pilot["every"] == 0 and str(done) not in record["curve"]
        finished = max([done, *map(int, record["curve"])]) >= pilot["max_steps"] and not unscored
        if finished or time.time() + chunk_seconds > deadline:
            return record
        started = time.perf_counter()
        if unscored:
            step, checkpoint = done, found[-1]
        else:
            resume = "latest" if found else None
            summary = train(config, resume=resume, stop_after=pilot["every"] - done % pilot["every"])
            step, checkpoint = summary["step"], Path(summary["checkpoint"])
        if step % pilot["every"] and step < config.train.max_steps:
            raise RunInterrupted(f"router pilot {recipe.name} stopped at step {step}; run it again to resume")
        if str(step) not in record["curve"]:  # a curve copied without its checkpoint is re-trained, not re-scored
            record["curve"][str(step)] = score_point(Path(checkpoint) / "model", pilot, device)
        chunk_seconds = time.perf_counter() - started
        record["seconds"] += chunk_seconds
        write_text_atomic(curve_file, json.dumps(record, indent=1))


def verdict(record: dict, baselines: dict, base_t2i: float, max_steps: int) -> dict:
    """(a), (b), (c) of the rule for one candidate, read at its last checkpoint (None: not finished)."""
    point = record["curve"].get(str(max_steps))
    if point is None:
        return {"finished": False}
    health = point["router_health"]
    learned = {task: passes(task, point[task], baselines.get(task)) for task in LEARNED_TASKS}
    return {
        "finished": True,
        "a_learned_tasks_pass": all(learned.values()),
        "passes": learned,
        "b_t2i_kept": point["t2i"]["all_correct"] >= base_t2i - T2I_KEEP,
        "t2i_vs_base": round(point["t2i"]["all_correct"] - base_t2i, 4),
        "c_routing_healthy": health["task_dependent"] >= MIN_TASK_DEPENDENT
        and health["dead"] == 0
        and health["saturated"] == 0,
        "edit_passes": passes("edit", point["edit"], baselines.get("edit")),
    }


def choose(verdicts: dict[str, dict]) -> dict:
    """The pre-registered rule over the candidates' verdicts (None until every candidate has finished)."""
    if not all(verdicts.get(r.name, {}).get("finished") for r in CANDIDATES):
        return {"recipe": None, "reason": "not every candidate has finished"}
    order = [r.name for r in CANDIDATES]
    for keys, reason in (
        (("a_learned_tasks_pass", "b_t2i_kept", "c_routing_healthy"), "first to pass (a), (b) and (c)"),
        (("a_learned_tasks_pass", "c_routing_healthy"), "none passes all three; first to pass (a) and (c)"),
    ):
        chosen = next((name for name in order if all(verdicts[name][key] for key in keys)), None)
        if chosen is not None:
            return {"recipe": chosen, "reason": reason}
    return {"recipe": order[0], "reason": "none passes (a) and (c): the paper's router; routing health failed"}


def base_t2i_score(base_model: str, pilot: dict, device: str) -> float:
    """The base model's t2i all-correct on the same validation prompts (criterion (b)): freshly upcycled, it
    is the base model exactly (DESIGN.md section 1)."""
    from mtu.config import MTUConfig
    from mtu.data.shapes.tasks import VALIDATION_SEED
    from mtu.evaluation.shapes_eval import score_reference
    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_pretrained(base_model, config=MTUConfig(tasks=["t2i"])).to(device)
    pipe.set_progress_bar_config(disable=True)
    return score_reference(pipe, "t2i", pilot["eval_samples"], VALIDATION_SEED, pilot["eval_steps"])["all_correct"]


def run_router_pilot(out: str | Path, config: str | Path, results: str | Path = RECORD_FILE, quick: bool = False,
                     jobs: int = 1, device: str | None = None, time_limit: float | None = None,
                     recipes: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Run (or continue) the candidates and write the record (curves, baselines, verdicts, choice) to `results`."""
    import torch
    import yaml

    from mtu.reproduce.jobs import parallel

    unknown = sorted(set(recipes or ()) - {r.name for r in CANDIDATES})
    if unknown:
        raise ValueError(f"unknown router recipes {unknown}; valid: {[r.name for r in CANDIDATES]}")
    base, pilot = yaml.safe_load(Path(config).read_text()), dict(QUICK if quick else FULL)
    pilot["prompts"] = {t: base["tasks"][t].get("prompt", True) for t in PILOT_TASKS}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    deadline = time.time() + (time_limit if time_limit is not None else float("inf"))
    results, out = Path(results), Path(out)
    record = json.loads(results.read_text()) if results.is_file() else {"runs": {}}
    if "baselines" not in record or quick:
        record["baselines"] = validation_baselines(PILOT_TASKS, pilot["eval_samples"])
        record["base_t2i_all_correct"] = base_t2i_score(base["model"], pilot, device)
    chosen = [r for r in CANDIDATES if recipes is None or r.name in recipes]
    for recipe in chosen:  # curves measured elsewhere (the committed record) seed the run folders
        seeded = out / recipe.name / "curve.json"
        if recipe.name in record["runs"] and not seeded.is_file():
            seeded.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(seeded, json.dumps(record["runs"][recipe.name], indent=1))
    calls = [(run_recipe, (r, out / r.name, base, pilot, device, deadline)) for r in chosen]
    curves = parallel(calls, jobs, desc="router pilot") if jobs > 1 else [call(*args) for call, args in calls]
    record["runs"].update({r.name: curve for r, curve in zip(chosen, curves)})
    return write_record(results, record, pilot, config)


def write_record(results: Path, record: dict, pilot: dict, config) -> dict:
    protocol = {**{k: v for k, v in pilot.items() if k != "prompts"}, "shared": SHARED, "config": str(config)}
    protocol.update(
        candidates=[{"name": r.name, "overrides": r.overrides, "why": r.why} for r in CANDIDATES],
        learned_tasks=list(LEARNED_TASKS), t2i_keep=T2I_KEEP, min_task_dependent=MIN_TASK_DEPENDENT,
    )  # fmt: skip
    verdicts = {
        name: verdict(run, record["baselines"], record["base_t2i_all_correct"], pilot["max_steps"])
        for name, run in record["runs"].items()
    }
    record = {**record, "protocol": protocol, "verdicts": verdicts, "choice": choose(verdicts)}
    record["runs"] = {name: record["runs"][name] for name in sorted(record["runs"])}
    results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results, json.dumps(record, indent=1) + "\n")
    return record
