"""Train and score every run of the plan (protocol v2), each recorded once, then write RESULTS.md.

A run's small result (per-task summaries and per-example scores on the test set, its router weights or
layer deviations) is written last and atomically to `records/<run name>.json`, a folder that is
committed: a run with a record is done on any machine, so an interrupted plan continues where it
stopped, here or on a fresh clone. Training state and models stay in `out` (not committed; a run
interrupted mid-training resumes from its last checkpoint when `out` is still there).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from mtu.assets import SHIPPED_MTU
from mtu.config import MTUConfig, write_text_atomic
from mtu.methods import Method
from mtu.reproduce.jobs import RunInterrupted, next_ready, parallel  # noqa: F401 - their names here too
from mtu.reproduce.plan import CPU_BUDGET, PAPER_TASKS, Run, Scope, build_plan, cut_runs, unique_runs
from mtu.reproduce.protocol import PROTOCOLS
from mtu.reproduce.ship import SHIPPED_RUN

RECORDS = Path("reproduction") / "runs"  # protocol v2's (`mtu.reproduce.protocol` knows v3's)
SHIPPED_DIR = SHIPPED_MTU
QUICK_SETTINGS = {"per_task": 2, "eval_samples": 4, "eval_steps": 2}
FULL_SETTINGS = {"per_task": None, "eval_samples": 256, "eval_steps": 25}  # per_task: the pilot's S


def reproduce(
    out: str | Path,
    config: str | Path,
    quick: bool = False,
    per_task: int | None = None,
    eval_samples: int | None = None,
    results: str | Path = "RESULTS.md",
    records: str | Path | None = None,
    tasks: tuple[str, ...] = PAPER_TASKS,
    eval_steps: int | None = None,
    jobs: int = 1,
    device: str | None = None,
    report_only: bool = False,
    pilot: str | Path | None = None,
    scope: Scope = CPU_BUDGET,
    ship_to: str | Path | None = SHIPPED_DIR,
    protocol: str = "v2",
) -> Path:
    """Run (or reuse) every run of the plan and write the results report; returns its path.

    Args:
        out: folder for training state and models (reused: unfinished runs resume).
        config: the training config every run starts from (configs/reproduce.yaml); the plan sets
            method, tasks, experts, seed and steps, the pilot's choice the learning-rate setting.
        quick: one seed, N in {1, 4}, no pairs, tiny budgets: a smoke test of the whole path.
        per_task: S, optimizer steps per task (default: the pilot's choice in `pilot`).
        eval_samples: test examples per task (>= 256 for the protocol).
        results: the report (figures go next to it, in `<stem>_figures/`).
        records: the committed folder of run records (default: the protocol's, `mtu.reproduce.protocol`).
        tasks: the tasks whose claims are checked (t2i and at least one more).
        eval_steps: denoising steps of the evaluation sampler.
        jobs: runs trained at once, each in its own process, in priority order (the model to ship,
            main, a task added later, pairs, extra, Fig. 2, experts); an add-task run starts only once the
            run it extends has finished.
        device: where runs train and score (default: cuda when available, else cpu).
        report_only: run nothing; write the report from the records there are (missing runs are listed).
        pilot: the pilot's record (default reproduction/pilot.json): its S and setting.
        scope: which runs beyond the main table (`plan.FULL`: the whole protocol; the default
            `plan.CPU_BUDGET`: what fits ~16 CPU-hours); the report lists the runs cut.
        ship_to: where `ship.SHIPPED_RUN` is written as the shipped `shapes-mtu` when it finishes
            (None: nowhere; never with `quick`).
        protocol: "v2" or "v3" (docs/reproduction.md): v3 re-runs the MTU runs with the router pilot's recipe
            into its own records and reuses v2's records of the other methods.
    """
    from mtu.reproduce.report import write_report

    given = {"per_task": per_task, "eval_samples": eval_samples, "eval_steps": eval_steps}
    settings, setting, pilot_record = _settings(quick, given, pilot, report_only)
    tables = build_plan(quick, tasks, scope=scope)
    base = yaml.safe_load(Path(config).read_text())
    if setting is not None:
        base = _with_setting(base, setting)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {sorted(PROTOCOLS)}")
    proto = PROTOCOLS[protocol](**({"records": Path(records)} if records is not None else {}))
    if quick:  # a smoke test trains every run: the committed records were scored on other examples
        proto = dataclasses.replace(proto, reused=None)
    # v3's MTU runs share v2's names: their training state must not resume v2's checkpoints.
    out, records = (Path(out) if proto.name == "v2" else Path(out) / proto.name), proto.records
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    queue = run_queue(tables)
    settings["setting"] = setting.name if setting else None
    settings["ship_to"] = None if quick or ship_to is None else str(ship_to)
    settings["protocol"] = proto
    started = time.perf_counter()
    if report_only:
        found = {run: _read_json(proto.record_file(run)) for run in queue}
        metrics = {run: record for run, record in found.items() if record is not None}
    else:
        calls = [(run_once, (run, out / run.name, records, base, settings, device)) for run in queue]
        done = (
            parallel(calls, jobs, desc="reproduce", after=dependencies(queue))
            if jobs > 1
            else [call(*a) for call, a in tqdm(calls, desc="reproduce")]
        )
        metrics = dict(zip(queue, done))
    elapsed = time.perf_counter() - started
    context = {"settings": settings, "setting": setting, "pilot": pilot_record, "seconds": elapsed,
               "out": str(out), "records": str(records), "scope": scope.name, "protocol": proto,
               "cut": [] if quick else [run.name for run in cut_runs(tables, tasks)]}  # fmt: skip
    return write_report(Path(results), tables, metrics, base, context)


def run_queue(tables: dict[str, list[Run]]) -> list[Run]:
    """Every run once, in priority order: the model to ship, the main table (seed-major), issue 16's
    group (after the main table, whose MTU models it extends), pairs, extra, Fig. 2, experts."""
    queue = unique_runs({name: tables[name] for name in ("main", "adding", "pairs", "extra", "deviation", "experts")})
    queue.sort(key=lambda run: run != SHIPPED_RUN)  # the model to ship trains first (stable otherwise)
    return queue


def dependencies(queue: list[Run]) -> dict[int, set[int]]:
    """For each run that needs another's trained model (add-task: the run it extends), that run's index."""
    index = {run: i for i, run in enumerate(queue)}
    return {i: {index[run.extends]} for i, run in enumerate(queue) if run.extends in index}


def _settings(quick: bool, given: dict, pilot: str | Path | None, report_only: bool):
    """The run settings (S from the pilot unless given), the pilot's chosen setting, and its record."""
    from mtu.reproduce.pilot import PILOT_FILE, chosen_setting

    settings = dict(QUICK_SETTINGS if quick else FULL_SETTINGS)
    settings.update({k: v for k, v in given.items() if v is not None})
    pilot_record = _read_json(Path(pilot or PILOT_FILE))
    setting = chosen_setting(pilot_record) if not quick else None
    if settings["per_task"] is None:
        settings["per_task"] = (pilot_record or {}).get("choice", {}).get("S")
    if settings["per_task"] is None and not report_only:
        raise ValueError(
            "no steps per task yet: the pilot has not chosen S (mtu reproduce --pilot), or pass --steps-per-task"
        )
    return settings, setting, pilot_record


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _with_setting(base: dict, setting) -> dict:
    from mtu.training.config import apply_overrides

    return apply_overrides(base, setting.overrides())


def train_config(run: Run, base: dict[str, Any], folder: Path, per_task: int):
    """The run's training config: the base config with the plan's method, tasks, experts, seed and steps."""
    from mtu.training.config import TrainConfig, apply_overrides

    steps = run.steps(per_task)
    overrides = {
        "method": run.method,
        "tasks": {task: base["tasks"][task] for task in run.tasks},
        "mtu.num_experts": run.num_experts,
        "seed": run.seed,
        "output_dir": str(folder / "train"),
        "train.max_steps": steps,
        "checkpoint.every": max(min(steps // 4, 1000), 1),
        "logging.log_with": "none",
        "logging.sample_every": 0,
    }
    if run.extends is not None:
        overrides["extends"] = str(model_dir(folder.parent, run.extends))
    if run.rank_as:
        overrides["adapter.rank"] = lora_rank(Run("lora", run.rank_as, run.num_experts, run.seed), base, folder)
    return TrainConfig.from_dict(apply_overrides(base, overrides))


def model_dir(out: Path, run: Run) -> Path:
    """Where a run of the plan leaves its trained model (`out` as given to `reproduce`)."""
    return out / run.name / "train" / "model"


def lora_rank(run: Run, base: dict[str, Any], folder: Path) -> int:
    """The adapter rank LoRA run `run` trains with (its "auto" rank: trainable count closest to MTU's)."""
    from mtu.training.components import unet_config
    from mtu.training.run import adapter_spec

    config = train_config(run, base, folder, 1)
    return adapter_spec(config, unet_config(config.model))[0].rank


def run_once(run: Run, folder: Path, records: Path, base: dict[str, Any], settings: dict, device: str = "cpu") -> dict:
    """Train (resuming) and score one run on `device`, unless its record exists; returns the record."""
    found = settings["protocol"].record_file(run) if "protocol" in settings else records / f"{run.name}.json"
    if found.is_file():
        return json.loads(found.read_text())
    record_file = records / f"{run.name}.json"
    started = time.perf_counter()
    record: dict[str, Any] = {"run": run.name, "device": str(device), "steps": run.steps(settings["per_task"])}
    if run.extends is not None:
        record["extends"] = {
            "run": run.extends.name,
            "retrained": _ensure_model(run.extends, folder.parent, base, settings),
        }
    trained = None if run.method == "base" else train_run(run, folder, base, settings)
    pipe = load_pipeline(base["model"], trained, run).to(device)
    record["tasks"] = {}
    for task in run.tasks:
        prompt = base["tasks"][task].get("prompt", True)
        record["tasks"][task] = evaluate(pipe, task, settings["eval_samples"], settings["eval_steps"], prompt)
    if run.method == Method.FULL:
        record["layer_deviations"] = _layer_deviations(base["model"], pipe, run.tasks[0])
    if run.method == Method.MTU:
        from mtu.evaluation.router_health import router_health

        record["routing"] = {name: w.tolist() for name, w in pipe.unet.routing_weights().items()}
        over = [task for task in run.tasks if task in PAPER_TASKS] or list(run.tasks)  # as RESULTS.md's Fig. 5
        record["router_health"] = router_health(pipe.unet, over).summary()
    if run.extends is not None:
        from mtu.reproduce.adding import old_tasks_difference

        record["old_tasks_max_abs_difference"] = old_tasks_difference(pipe, model_dir(folder.parent, run.extends))
    if run.rank_as:
        record["lora_rank"] = lora_rank(Run("lora", run.rank_as, run.num_experts, run.seed), base, folder)
    record["seconds"] = time.perf_counter() - started
    records.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record_file, json.dumps(_rounded(record), separators=(",", ":")) + "\n")
    if run == SHIPPED_RUN and settings.get("ship_to") and trained is not None:
        _ship(trained, record, base, settings, pipe)
    return record


def train_run(run: Run, folder: Path, base: dict[str, Any], settings: dict) -> Path:
    """Train `run` into `folder` (resuming from its checkpoint when there is one); its model folder."""
    from mtu.training import train

    if "protocol" in settings:  # v3: the router pilot's recipe for MTU runs
        from mtu.training.config import apply_overrides

        base = apply_overrides(base, settings["protocol"].overrides(run))
    config = train_config(run, base, folder, settings["per_task"])
    resume = "latest" if (folder / "train" / "checkpoints").is_dir() else None
    summary = train(config, resume=resume)
    if summary["model"] is None:  # stopped by a signal: checkpointed; the next call resumes it
        raise RunInterrupted(f"{run.name} stopped at step {summary['step']}; run again to resume")
    return Path(summary["model"])


def _ensure_model(run: Run, out: Path, base: dict[str, Any], settings: dict) -> bool:
    """Make sure `run`'s trained model is on disk; whether it had to be (re)trained for it.

    Its record may come from another machine (records are committed, models are not): it is then trained
    again from its seed (a pure function of seed and step, as the first time) but not scored again.
    """
    if (model_dir(out, run) / "mtu_config.json").is_file():
        return False
    tqdm.write(f"{run.name}: its trained model is not in {out}; training it again (its record is kept)")
    train_run(run, out / run.name, base, settings)
    return True


def _ship(model_dir: Path, record: dict, base: dict[str, Any], settings: dict, pipe=None) -> None:
    """Ship `model_dir` (the shipped run's model) with a card from its record, its test baselines, the
    base model's t2i score and the check on unused examples (`mtu.reproduce.ship_check`)."""
    from mtu.data.shapes.baselines import BASELINES
    from mtu.data.shapes.tasks import TEST_SEED
    from mtu.evaluation.shapes_eval import evaluate_baseline
    from mtu.reproduce.ship import ship
    from mtu.reproduce.ship_check import check_shipped

    baselines = {
        t: evaluate_baseline(t, settings["eval_samples"], TEST_SEED) for t in record["tasks"] if t in BASELINES
    }
    base_run = Run("base", ("t2i",), SHIPPED_RUN.num_experts, 0)  # the plan's base row (untrained upcycle)
    base_record = _read_json(settings["protocol"].record_file(base_run)) if "protocol" in settings else None
    pipe = pipe or load_pipeline(base["model"], model_dir, SHIPPED_RUN)
    prompts = {task: base["tasks"][task].get("prompt", True) for task in record["tasks"]}
    check = check_shipped(pipe, load_pipeline(base["model"], None, base_run), prompts, settings["eval_samples"],
                          settings["eval_steps"])  # fmt: skip
    context = {**settings, "base_t2i": base_record["tasks"]["t2i"]["all_correct"] if base_record else None,
               "check": check, **_recipe(settings.get("protocol"))}  # fmt: skip
    ship(model_dir, record, baselines, context, Path(settings["ship_to"]))


def _recipe(proto) -> dict:
    """The protocol's name and its router pilot's recipe, for the card (v2 has no router pilot)."""
    pilot = getattr(proto, "router_pilot", None) or {}
    return {"protocol": getattr(proto, "name", None), "router_recipe": pilot.get("choice", {}).get("recipe")}


def ship_only(out: str | Path, config: str | Path, protocol: str, ship_to: str | Path = SHIPPED_DIR) -> Path:
    """Ship the finished shipped run of `protocol` again (weights, sampler, card and its check), from the
    model in `out` and its committed record: the card follows the code that writes it, not the run's."""
    proto = PROTOCOLS[protocol]()
    record = _read_json(proto.record_file(SHIPPED_RUN))
    folder = model_dir(Path(out) if proto.name == "v2" else Path(out) / proto.name, SHIPPED_RUN)
    if record is None or not (folder / "mtu_config.json").is_file():
        raise FileNotFoundError(
            f"the shipped run {SHIPPED_RUN.name} of protocol {protocol} has not finished here (record "
            f"{proto.record_file(SHIPPED_RUN)}, model {folder}): run `mtu reproduce --protocol {protocol}` first"
        )
    settings, setting, _ = _settings(False, {}, None, False)
    base = yaml.safe_load(Path(config).read_text())
    if setting is not None:
        base = _with_setting(base, setting)
    settings.update(protocol=proto, ship_to=str(ship_to), setting=setting.name if setting else None)
    _ship(folder, record, base, settings)
    return Path(ship_to)


def _rounded(value: Any) -> Any:
    """Floats to 5 significant digits: the records are committed, and scores mean nothing beyond that."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def load_pipeline(base: str, model_dir: Path | None, run: Run):
    """An MTUPipeline over the run's trained denoiser (or the freshly upcycled base for "base")."""
    from mtu.pipelines import MTUPipeline

    if model_dir is None:
        pipe = MTUPipeline.from_pretrained(base, config=MTUConfig(tasks=list(run.tasks), num_experts=run.num_experts))
    else:
        pipe = MTUPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(pipe, task: str, samples: int, steps: int, prompt: bool = True) -> dict:
    """Summary and per-example scores of one task on the test split (prompt as the task trains)."""
    from mtu.data.shapes.tasks import TEST_SEED
    from mtu.evaluation.shapes_eval import score_reference

    metrics = score_reference(pipe, task, samples, TEST_SEED, steps, prompt, per_example=True)
    metrics.pop("by_num_objects", None)
    return metrics


def _layer_deviations(base_model: str, pipe, task: str) -> dict[str, list]:
    """Fig. 2's raw material: per layer of the fully fine-tuned denoiser, (L2 change, numel, partial)."""
    from diffusers import UNet2DConditionModel

    from mtu.assets import resolve_model_path
    from mtu.evaluation.analysis import layer_deviations

    pretrained = UNet2DConditionModel.from_pretrained(resolve_model_path(base_model), subfolder="unet").state_dict()
    finetuned = {key: value.detach().cpu() for key, value in pipe.unet.export(task).state_dict().items()}
    return {name: list(values) for name, values in layer_deviations(pretrained, finetuned).items()}
