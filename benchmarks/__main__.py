"""`python -m benchmarks [--quick] [--out BENCHMARKS.md] [--json benchmarks.json]`: measure, then write the report.

For the published figures, run on a quiet machine: `benchmarks/run_paused.sh` pauses the background
pre-training job for the duration and always resumes it.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks import (
    busy_cpu,
    cpu_speed,
    denoiser,
    deploy,
    deploy_openvino,
    ffn,
    http_load,
    limits,
    size,
    switching,
    train_cache,
    training,
)
from benchmarks.configs import base_unet
from benchmarks.report import Section, environment, sections_from_json, to_json, to_markdown
from benchmarks.settings import Settings


def gpu_section(settings: Settings) -> Section:
    return Section(
        key="gpu",
        title="GPU (bf16)",
        method=(
            "Not measured: no GPU machine was lent to the session that generated this report, so the bf16 GPU "
            "figures (FFN layer, whole denoiser, mixed-task batches on an accelerator) are absent. Everything above "
            "is fp32 on CPU."
        ),
    )


SECTIONS: dict[str, Callable[[Settings], Section]] = {
    "ffn": ffn.run,
    "denoiser": denoiser.run_denoiser,
    "size": size.run,
    "switching": switching.run,
    "mixed": denoiser.run_mixed,
    "training": training.run,
    "cache": train_cache.run,
    "limits": limits.run,
    "cpu": cpu_speed.run,
    "busy": busy_cpu.run,
    "deploy": deploy.run,
    "deploy-quality": deploy.run_quality,
    "openvino": deploy_openvino.run,
    "http": http_load.section,
    "gpu": gpu_section,
}


# Run order: training needs the most memory (full fine-tuning: ~14 GiB in a worker), so it runs after the
# shared base UNet is released, as does cpu (two workers holding SD1.5: ~13 GiB together); the report keeps
# the order of SECTIONS.
RUN_ORDER = [
    "ffn",
    "denoiser",
    "size",
    "switching",
    "mixed",
    "limits",
    "deploy",
    "deploy-quality",
    "openvino",
    "http",
    "training",
    "cache",
    "cpu",
    "busy",
    "gpu",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small dimensions, few repetitions: a smoke test (< 1 min)"
    )
    parser.add_argument("--out", default="BENCHMARKS.md", help="Markdown report to write (default BENCHMARKS.md)")
    parser.add_argument("--json", default="benchmarks.json", help="JSON figures to write (default benchmarks.json)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: figures comparable across runs)"
    )
    parser.add_argument("--repeats", type=int, help="timed repetitions per figure (default 7, --quick 3)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), help="run only these sections (default all)")
    parser.add_argument("--note", default="", help="a line for the report header (e.g. what was paused)")
    parser.add_argument("--model", help="a trained MTU model (folder or shipped name): the deploy-quality section")
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-measure only --sections and merge them into the existing --json report (rewrites --out too)",
    )
    return parser.parse_args(argv)


def run_sections(names: list[str], settings: Settings) -> list[Section]:
    sections = {}
    for name in sorted(names, key=RUN_ORDER.index):
        if name in ("training", "cpu"):  # their workers hold models of their own: free the shared one
            base_unet.cache_clear()
            gc.collect()
        start = time.perf_counter()
        print(f"[benchmarks] {name} ...", flush=True)
        section = SECTIONS[name](settings)
        section.seconds = time.perf_counter() - start
        for target in section.targets:
            print(
                f"  {target.verdict:>8}: {target.name} = {target.figure:.4g} (target {target.bound_text})", flush=True
            )
        sections[name] = section
    base_unet.cache_clear()
    return [sections[name] for name in SECTIONS if name in sections]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.update and not args.sections:
        raise SystemExit("--update re-measures the sections named by --sections; name at least one")
    settings = Settings(
        quick=args.quick,
        repeats=args.repeats or (3 if args.quick else 7),
        warmup=1,
        threads=args.threads,
        model=args.model,
    )
    torch.set_num_threads(settings.threads)
    env = environment(settings.threads, settings.quick, args.note)
    start = time.perf_counter()
    sections = run_sections(args.sections or list(SECTIONS), settings)
    total = time.perf_counter() - start
    if args.update:
        env, sections, total = merge(Path(args.json), env, sections, total)
    Path(args.out).write_text(to_markdown(env, sections, total))
    Path(args.json).write_text(json.dumps(to_json(env, sections, total), indent=2) + "\n")
    print(f"[benchmarks] wrote {args.out} and {args.json} in {total:.0f} s")
    return 0


def merge(path: Path, env: dict, fresh: list[Section], seconds: float) -> tuple[dict, list[Section], float]:
    """The report in `path` with `fresh` sections replacing its own, and the update recorded in its header."""
    previous = json.loads(path.read_text())
    if previous["environment"]["mode"] != env["mode"]:
        raise SystemExit(f"{path} was written in {previous['environment']['mode']!r} mode, this run is {env['mode']!r}")
    old = sections_from_json(previous)
    sections = old | {section.key: section for section in fresh}
    update = {key: env[key] for key in ("command", "date", "load_average_at_start", "note", "machine")}
    update["sections"] = [section.key for section in fresh]
    merged_env = dict(previous["environment"])
    merged_env["updates"] = [*merged_env.get("updates", []), update]
    replaced = sum(
        old[section.key].seconds for section in fresh if section.key in old
    )  # a new section replaces nothing
    total = previous["total_seconds"] + sum(section.seconds for section in fresh) - replaced
    return merged_env, [sections[key] for key in SECTIONS if key in sections], total


if __name__ == "__main__":
    raise SystemExit(main())
