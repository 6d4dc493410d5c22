"""`mtu reproduce`: train and evaluate every configuration behind the paper's claims; writes RESULTS.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtu.utils.outputs import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reproduce", help="re-check the paper's claims (tables, ablations, analyses)")
    parser.add_argument(
        "--config", type=Path, default=None, help="base training config (default: configs/reproduce.yaml)"
    )
    parser.add_argument(
        "--out", type=output_path, default=Path("runs/reproduce"), help="folder of training state and models"
    )
    parser.add_argument(
        "--results",
        type=output_path,
        default=Path("RESULTS.md"),
        help="report to write (default RESULTS.md; for --protocol v2, whose report is kept as history, "
        "reproduction/v2/RESULTS.md)",
    )
    parser.add_argument(
        "--records",
        type=Path,
        default=None,
        help="committed folder of run records (default: reproduction/runs for v2, reproduction/runs-v3 for v3)",
    )
    parser.add_argument(
        "--protocol",
        choices=("v2", "v3"),
        default="v2",
        help="v2: the committed report's protocol; v3: MTU runs re-run with the router pilot's recipe, other "
        "methods' records reused from v2 (docs/reproduction.md)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one seed, N in {1, 4}, no pairs, tiny budgets: a smoke test"
    )
    parser.add_argument("--steps-per-task", type=int, default=None, help="S (default: the pilot's choice)")
    parser.add_argument(
        "--tasks", default="t2i,edit,sr,remove", help="tasks whose claims are checked (default: the paper's four)"
    )
    parser.add_argument("--eval-samples", type=int, default=None, help="test examples per task (default 256)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each (default 1)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: write the report from the finished runs"
    )
    parser.add_argument(
        "--ship-only",
        action="store_true",
        help="run nothing: ship the finished shipped run again as shapes-mtu (weights, sampler, model card and its "
        "check on examples no run uses), from the model in --out and its record",
    )
    parser.add_argument(
        "--scope",
        choices=("cpu-budget", "cpu-budget-v3", "full"),
        default=None,
        help="runs beyond the main table: what fits the protocol's budget (default: cpu-budget for v2, ~16 "
        "CPU-hours; cpu-budget-v3 for v3, 24 CPU-hours with its pilots) or the whole protocol",
    )
    _pilot_options(parser)
    parser.set_defaults(func=run)


def _pilot_options(parser: argparse.ArgumentParser) -> None:
    pilot = parser.add_argument_group("pilot (docs/reproduction.md)")
    pilot.add_argument(
        "--pilot",
        action="store_true",
        help="run the pilot instead (single-task learning curves on validation; chooses S and the "
        "learning-rate setting); writes reproduction/pilot.json",
    )
    pilot.add_argument(
        "--router-pilot",
        action="store_true",
        help="run protocol v3's multi-task pilot instead (MTU on the four paper tasks per router recipe, on "
        "validation; chooses the router recipe); writes reproduction/router_pilot.json",
    )
    pilot.add_argument(
        "--router-recipes", default=None, help="--router-pilot: comma-separated recipe names to run (default all)"
    )
    pilot.add_argument(
        "--time-limit", type=float, default=None, help="--pilot: seconds; no chunk starts that would end later"
    )
    pilot.add_argument(
        "--pilot-settings", default=None, help="--pilot: comma-separated setting names to run (default all)"
    )
    pilot.add_argument(
        "--pilot-runs", default=None, help="--pilot: comma-separated run names (pilot-TASK-SETTING) to run"
    )
    pilot.add_argument(
        "--pilot-until",
        type=int,
        default=None,
        help="--pilot: train runs only to this step in this call (e.g. the best S so far)",
    )
    pilot.add_argument(
        "--pilot-stop-passed",
        action="store_true",
        help="--pilot: a run stops once it passes the bar (later points cannot lower S)",
    )


def run(args: argparse.Namespace) -> None:
    from mtu.reproduce import reproduce
    from mtu.reproduce.pilot import REPRODUCE_CONFIG
    from mtu.reproduce.plan import DEFAULT_SCOPE, SCOPES
    from mtu.reproduce.report import V2_REPORT

    if args.pilot and args.router_pilot:
        raise ValueError("--pilot and --router-pilot are two different pilots: pass one")
    check_outputs(args, args.config or REPRODUCE_CONFIG)
    if args.pilot:
        return run_pilot(args)
    if args.router_pilot:
        return run_router_pilot(args)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.ship_only:
        from mtu.reproduce.runner import ship_only

        print(f"shipped {ship_only(args.out, args.config or REPRODUCE_CONFIG, args.protocol)}")
        return None
    tasks = tuple(task.strip() for task in args.tasks.split(",") if task.strip())
    results = args.results
    if args.protocol == "v2" and not args.quick and results == Path("RESULTS.md"):
        results = Path(V2_REPORT)  # RESULTS.md is v3's report: v2's would silently replace it
    report = reproduce(
        args.out,
        args.config or REPRODUCE_CONFIG,
        args.quick,
        args.steps_per_task,
        args.eval_samples,
        results,
        args.records,
        tasks,
        jobs=args.jobs,
        device=args.device,
        report_only=args.report_only,
        scope=SCOPES[args.scope or DEFAULT_SCOPE[args.protocol]],
        protocol=args.protocol,
    )
    print(f"wrote {report}")


def check_outputs(args: argparse.Namespace, config: Path) -> None:
    """--out and --results are never the model the runs train from, nor inside it."""
    import yaml

    from mtu.assets import local_model_path
    from mtu.utils.outputs import check_not_source

    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return  # the runs report an unreadable config themselves
    models = [local_model_path(data.get(key)) for key in ("model", "extends")] if isinstance(data, dict) else []
    check_not_source(args.out, models, replaced=False)  # runs are added to --out: holding the model is fine
    check_not_source(args.results, models, "--results")


def run_router_pilot(args: argparse.Namespace) -> None:
    from mtu.reproduce.pilot import REPRODUCE_CONFIG
    from mtu.reproduce.router_pilot import RECORD_FILE, run_router_pilot

    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    results = args.results if args.results != Path("RESULTS.md") else RECORD_FILE
    recipes = tuple(r.strip() for r in args.router_recipes.split(",") if r.strip()) if args.router_recipes else None
    record = run_router_pilot(
        args.out / "router-pilot",
        args.config or REPRODUCE_CONFIG,
        results,
        quick=args.quick,
        jobs=args.jobs,
        device=args.device,
        time_limit=args.time_limit,
        recipes=recipes,
    )
    choice = record["choice"]
    print(f"wrote {results}: router recipe {choice['recipe'] or '(none yet)'} ({choice['reason']})")


def run_pilot(args: argparse.Namespace) -> None:
    from mtu.reproduce.pilot import PILOT_FILE, PILOT_TASKS, REPRODUCE_CONFIG, run_pilot

    results = args.results if args.results != Path("RESULTS.md") else PILOT_FILE
    tasks = tuple(task.strip() for task in args.tasks.split(",") if task.strip() and task.strip() in PILOT_TASKS)
    settings = tuple(s.strip() for s in args.pilot_settings.split(",")) if args.pilot_settings else None
    only = tuple(name.strip() for name in args.pilot_runs.split(",")) if args.pilot_runs else None
    record = run_pilot(
        args.out / "pilot",
        args.config or REPRODUCE_CONFIG,
        results,
        args.quick,
        args.jobs,
        args.device,
        args.time_limit,
        tasks,
        settings,
        only,
        args.pilot_until,
        args.pilot_stop_passed,
    )
    choice = record["choice"]
    if choice["S"] is None:
        print(f"wrote {results}: no setting passes every task yet (never passed: {choice['never_passed']})")
    else:
        unlearned = f"; unlearned (claims undecidable): {choice['unlearned']}" if choice.get("unlearned") else ""
        print(f"wrote {results}: S = {choice['S']} steps with setting {choice['setting']}{unlearned}")
