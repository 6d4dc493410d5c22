"""Section: PyTorch on CPU, the settings tried for issue 15 — the denoiser forward and one training step.

Forward (fp32, random-weight SD1.5 at 64x64 latent, batch 1; shapes-base at 16x16, batch 2; `--quick`: a
tiny UNet): two worker processes stay alive for the whole measurement (`python -m benchmarks.cpu_speed
worker ...`). One keeps glibc's default allocator and holds every variant (eager, channels-last,
oneDNN-packed layers, torch.compile); the other calls `mtu.utils.runtime.tune_allocator()` at start, as the
sampling `mtu` commands do, and holds the eager model. The parent asks for one forward at a time
(`benchmarks/timing.py` alternates the variants across both processes), so they never run together.
Every variant's output is compared with the default process's eager output (same seed, same weights).

Training: `mtu train` on shapes-base with cached latents, 4 tasks, batch 16, 1 thread, each run a process
of its own (`benchmarks.train_cache measure`, with `--tune` for the tuned runs; `mtu train` runs untuned);
the default runs without it.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch

from benchmarks import train_cache
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.timing import measure
from benchmarks.workers import Worker, max_rss_bytes, reply, run_worker
from mtu.utils.runtime import OPT_OUT, USER_SETTINGS

# Latent side and batch: SD1.5 at its 512 px, one image; shapes-base at its 64 px with the guidance pair.
SHAPES = {"sd15": (64, 1), "shapes-base": (16, 2), "tiny": (16, 2)}
LABELS = {"sd15": "SD1.5 (random weights)", "shapes-base": "shapes-base", "tiny": "tiny UNet"}
EAGER = "eager"
TUNED = "eager + tuned allocator"  # label("tuned", EAGER)
SHORT = {"channels_last": "channels-last", "packed": "oneDNN-packed layers", "compiled": "torch.compile (freezing)"}
NAMES = {
    EAGER: "PyTorch eager (glibc default)",
    TUNED: "eager, glibc keeps freed memory (`tune_allocator`, the shipped default)",
    "channels_last": "channels-last (`unet.to(memory_format=torch.channels_last)`)",
    "packed": "oneDNN-packed Linear / Conv2d (`torch.utils.mkldnn.to_mkldnn`)",
    "compiled": "torch.compile, inductor with freezing",
}
ALLOCATOR_SETTINGS = (*USER_SETTINGS, "GLIBC_TUNABLES", OPT_OUT)
MODES = ("default", "tuned")  # the allocator of a training run
SAME = 1e-5  # relative L2 error of an output to the eager default: equal within fp32 rounding


def load_unet(name: str) -> torch.nn.Module:
    if name == "shapes-base":
        from diffusers import UNet2DConditionModel

        from mtu.assets import resolve_model_path

        return UNet2DConditionModel.from_pretrained(resolve_model_path("shapes-base"), subfolder="unet").eval()
    from benchmarks.configs import build_unet

    return build_unet(name)


def unet_args(unet: torch.nn.Module, batch: int, latent: int) -> tuple:
    """Random denoiser inputs (seeded: every process draws the same)."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, unet.config.in_channels, latent, latent, generator=generator)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=generator)
    return sample, torch.full((batch,), 500), text


def prepare(variant: str, unet: torch.nn.Module, args: tuple):
    """A call of one forward of `variant`; copies share every tensor the variant does not change."""
    if variant == EAGER:
        return lambda: unet(*args).sample
    if variant == "channels_last":
        memo = {id(t): t for t in [*unet.parameters(), *unet.buffers()] if t.dim() != 4}
        model = copy.deepcopy(unet, memo).to(memory_format=torch.channels_last)
        nhwc = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        return lambda: model(*nhwc).sample
    shared = copy.deepcopy(unet, {id(t): t for t in [*unet.parameters(), *unet.buffers()]})
    if variant == "packed":
        from torch.utils import mkldnn

        model = mkldnn.to_mkldnn(shared)
        return lambda: model(*args).sample
    if variant == "compiled":
        import torch._inductor.config as inductor

        inductor.freezing = True  # weights become constants: prepacked for oneDNN / MKL, folded where they can
        model = torch.compile(shared)
        return lambda: model(*args).sample
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(NAMES)}")


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_gib() -> float:
    """This process's peak resident memory (`workers.max_rss_bytes`: not ru_maxrss, which a worker inherits)."""
    return max_rss_bytes() / 2**30


def serve(args: argparse.Namespace) -> None:
    """The worker: build the variants, save their outputs, then answer `run VARIANT` with its page faults."""
    torch.set_num_threads(args.threads)
    tuned = False
    if args.tune:
        from mtu.utils.runtime import tune_allocator

        tuned = tune_allocator()
    unet = load_unet(args.model)
    inputs = unet_args(unet, args.batch, args.latent)
    calls, first = {}, {}
    with torch.no_grad():  # as the pipelines run the denoiser (inductor freezes only without grad)
        for variant in args.variants.split(","):
            start = time.perf_counter()
            calls[variant] = prepare(variant, unet, inputs)
            torch.save(calls[variant](), Path(args.outputs) / f"{args.name}-{variant}.pt")
            first[variant] = time.perf_counter() - start  # setup + first call: a compile's whole cost
        reply({"tuned": tuned, "first_call_seconds": first, "peak_gib": peak_gib()})
        for line in sys.stdin:
            command, _, variant = line.strip().partition(" ")
            if command == "quit":
                break
            before = page_faults()
            calls[variant]()
            reply({"faults": page_faults() - before})


def clean_environment() -> dict[str, str]:
    """This process's environment without allocator settings: the default worker gets glibc's defaults even
    when started from a tuned process (an `mtu` command or a test that ran one exports them)."""
    return {key: value for key, value in os.environ.items() if key not in ALLOCATOR_SETTINGS}


def start_worker(name: str, model: str, variants: list[str], tune: bool, outputs: str, threads: int) -> Worker:
    latent, batch = SHAPES[model]
    arguments = ["worker", "--name", name, "--model", model, "--latent", str(latent), "--batch", str(batch)]
    arguments += ["--variants", ",".join(variants), "--outputs", outputs, "--threads", str(threads)]
    env = clean_environment() | {"TORCHINDUCTOR_CACHE_DIR": str(Path(outputs) / "inductor")}  # a cold compile
    return Worker("benchmarks.cpu_speed", arguments + (["--tune"] if tune else []), env)


def variants_of(model: str, quick: bool) -> dict[str, list[str]]:
    """Each process's variants. A compile of SD1.5 takes many minutes on a small CPU, and --quick (a smoke
    test of seconds) compiles nothing."""
    tried = [EAGER, "channels_last", "packed"] + (["compiled"] if model == "shapes-base" and not quick else [])
    return {"default": tried, "tuned": [EAGER]}


def label(process: str, variant: str) -> str:
    return variant if process == "default" else f"{variant} + tuned allocator"


def forward_figures(model: str, settings: Settings) -> dict:
    """Timing, first-call seconds, page faults and output errors of every variant of one model."""
    plan = variants_of(model, settings.quick)
    labels = {label(process, v): (process, v) for process, variants in plan.items() for v in variants}
    with tempfile.TemporaryDirectory() as outputs:
        workers = {
            p: start_worker(p, model, variants, p == "tuned", outputs, settings.threads) for p, variants in plan.items()
        }
        try:
            started = {process: worker.answer() for process, worker in workers.items()}
            faults = {}  # of each variant's last timed forward

            def call(name: str) -> None:
                process, variant = labels[name]
                faults[name] = workers[process].call(f"run {variant}")["faults"]

            sd15 = model == "sd15"  # ~12 s a forward: every variant's first call at setup is its warm-up
            repeats = settings.scaled(5 if sd15 else settings.repeats).repeats
            calls = {name: partial(call, name) for name in labels}
            timing = measure(calls, repeats=repeats, warmup=0 if sd15 else settings.warmup)
        finally:
            for worker in workers.values():
                worker.close()
        reference = torch.load(Path(outputs) / f"default-{EAGER}.pt")
        errors = {name: _error(torch.load(Path(outputs) / f"{p}-{v}.pt"), reference) for name, (p, v) in labels.items()}
    first = {name: started[process]["first_call_seconds"][variant] for name, (process, variant) in labels.items()}
    peak = {process: started[process]["peak_gib"] for process in plan}
    tuned = started["tuned"]["tuned"]
    return {"timing": timing, "faults": faults, "errors": errors, "first": first, "peak": peak, "tuned": tuned}


def _error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


def forward_table(model: str, figures: dict) -> Table:
    timing, variants = figures["timing"], list(figures["timing"].samples)
    latent, batch = SHAPES[model]
    table = Table(
        [
            "variant",
            "time / eager default",
            "spread",
            "median s per forward",
            "setup + first call s",
            "page faults per forward",
            "relative error vs eager default",
        ],
        caption=f"{LABELS[model]}, {latent}x{latent} latent, batch {batch}; peak memory after setup: default process "
        f"{figures['peak']['default']:.1f} GiB (every variant), tuned process {figures['peak']['tuned']:.1f} GiB",
    )
    for variant in variants:
        table.rows.append(
            [
                NAMES[variant],
                timing.ratio(variant, EAGER),
                timing.noise(variant, EAGER),
                timing.median(variant),
                figures["first"][variant],
                figures["faults"][variant],
                figures["errors"][variant],
            ]
        )
    return table


def forward_targets(model: str, figures: dict) -> list[Target]:
    """The allocator setting (adopted): faster where a forward page-faults, never slower, the same output.
    The other variants are reported (tried, not adopted: docs/reliability.md says why)."""
    timing, name, large = figures["timing"], LABELS[model], model == "sd15"
    targets = [
        Target(
            f"{name}: allocator-tuned / default forward time" + ("" if large else " (no loss)"),
            timing.ratio(TUNED, EAGER),
            "<=",
            0.98 if large else 1.02,
            detail=f"tune_allocator applied: {figures['tuned']}; page faults per forward "
            f"{figures['faults'][EAGER]:,} default, {figures['faults'][TUNED]:,} tuned",
            cause="the setting removes page faults; where a forward has few (see the page-fault column) there is "
            "nothing to gain",
        ),
        Target(f"{name}: allocator-tuned output, relative error vs default", figures["errors"][TUNED], "<=", SAME),
    ]
    for variant in [v for v in timing.samples if v not in (EAGER, TUNED)]:
        detail = (
            f"relative error {figures['errors'][variant]:.1e}; setup + first call {figures['first'][variant]:.1f} s"
        )
        ratio = timing.ratio(variant, EAGER)
        targets.append(Target(f"{name}: {SHORT[variant]} / eager forward time (tried)", ratio, "", 0, detail=detail))
    return targets


def training_figures(settings: Settings) -> dict[str, list[float]]:
    """Seconds per step of `mtu train` (cached latents, 4 tasks), with and without the allocator setting.

    --quick (a smoke test: its figures mean nothing) fills a small cache in this process and runs a few
    steps each way, both runs at once.
    """
    steps, warmup, pool, rounds = (2, 1, 4, 1) if settings.quick else (45, 5, 256, 2)
    common = ["--tasks", "4", "--pool", str(pool), "--threads", str(settings.threads)]
    with tempfile.TemporaryDirectory() as cache_dir:
        if settings.quick:
            train_cache.fill(4, cache_dir, pool)
        else:
            run_worker("benchmarks.train_cache", ["fill", "--cache-dir", cache_dir, *common], unset=ALLOCATOR_SETTINGS)
        arguments = ["measure", "--cache", "latents", "--cache-dir", cache_dir, *common]
        arguments += ["--steps", str(steps), "--warmup", str(warmup)]
        train = partial(_train_step_seconds, arguments)
        if settings.quick:
            with ThreadPoolExecutor(2) as pool_of_two:
                return {mode: [seconds] for mode, seconds in zip(MODES, pool_of_two.map(train, MODES))}
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for index in range(rounds):
            for mode in MODES if index % 2 == 0 else MODES[::-1]:
                times[mode].append(train(mode))
    return times


def _train_step_seconds(arguments: list[str], mode: str) -> float:
    tune = ["--tune"] if mode == "tuned" else []
    figures = run_worker("benchmarks.train_cache", [*arguments, *tune], unset=ALLOCATOR_SETTINGS)
    if figures["allocator_tuned"] != (mode == "tuned"):
        raise RuntimeError(f"the {mode} training run did not get its allocator setting: {figures}")
    return figures["step_seconds"]


def training_table(times: dict[str, list[float]]) -> tuple[Table, float]:
    ratio = statistics.median(t / d for t, d in zip(times["tuned"], times["default"]))
    default, tuned = statistics.median(times["default"]), statistics.median(times["tuned"])
    table = Table(
        ["`mtu train` (cached latents, 4 tasks)", "s / step", "tuned / default"],
        [
            ["glibc default (what `mtu train` runs with)", default, 1.0],
            ["allocator tuned (`mtu.utils.runtime.tune_allocator`)", tuned, ratio],
        ],
    )
    return table, ratio


def run(settings: Settings) -> Section:
    models = ["tiny"] if settings.quick else ["sd15", "shapes-base"]
    tables, targets, figures_by_model = [], [], {}
    for model in models:
        figures = figures_by_model[model] = forward_figures(model, settings)
        tables.append(forward_table(model, figures))
        targets += forward_targets(model, figures)
    train_table, ratio = training_table(training_figures(settings))
    tables.append(train_table)
    targets.append(
        Target(
            "training step, allocator-tuned / default (cached latents, 4 tasks)",
            ratio,
            "<=",
            1.02,
            cause="the setting only removes page faults and a shapes-base step has few; a loss beyond the noise "
            "would be heap fragmentation (compare the page faults and the spread)",
        )
    )
    return Section(
        key="cpu",
        title="PyTorch on CPU: allocator, memory format, packing, compile",
        method=_method(settings),
        tables=tables,
        targets=targets,
        notes=notes(figures_by_model),
    )


def notes(figures_by_model: dict[str, dict]) -> list[str]:
    """What is adopted and why the rest is not, from this run's figures."""
    lines = [
        "Adopted for sampling: the allocator setting, called at start by the commands that only sample (generate, "
        "serve, eval, info, export, demo: `mtu.utils.runtime.tune_allocator`; `MTU_NO_MALLOC_TUNING=1` opts out), "
        "not by "
        "train / reproduce / quickstart (the training row). It changes no arithmetic (the relative errors above); "
        "the cost is that freed memory stays with the process (docs/reliability.md)."
    ]
    for model, figures in figures_by_model.items():
        timing, first = figures["timing"], figures["first"]
        found = [f"{SHORT[v]} {timing.ratio(v, EAGER):.3f}x" for v in timing.samples if v in SHORT]
        lines.append(f"Tried, not adopted ({LABELS[model]}, time / eager): " + ", ".join(found) + ".")
        if "compiled" in timing.samples:
            saved = timing.median(EAGER) - timing.median("compiled")
            cost = first["compiled"] - first[EAGER]
            forwards = f"{cost / saved:,.0f} forwards" if saved > 0 else "never"
            lines.append(
                f"torch.compile ({LABELS[model]}): {cost:.0f} s to compile (cold cache) against {saved * 1000:.1f} ms "
                f"saved per forward: it pays back after {forwards}, more than a command line run does."
            )
    return lines


def _method(settings: Settings) -> str:
    return (
        f"`benchmarks/cpu_speed.py`, fp32, {settings.threads} torch thread(s). Forward: two worker processes, "
        "one with glibc's default allocator holding every variant, one that calls `mtu.utils.runtime.tune_allocator()` "
        "at start (as the sampling `mtu` commands do) holding the eager model; one forward at a time, the variants "
        "alternating across both processes (no grad, as the pipelines run). 'Setup + first call' counts a "
        "compile. Relative error: L2 distance of a variant's output to the default process's eager output "
        "(same seed and weights), over the latter's norm. Training: `mtu train` (shapes-base, cached latents, "
        "4 tasks, batch 16), each run its own process, the default one with `MTU_NO_MALLOC_TUNING=1`; rounds "
        "alternate the order; the ratio is the median of per-round ratios."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="a forward-timing worker of `python -m benchmarks --sections cpu`")
    parser.add_argument("mode", choices=["worker"])
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", choices=list(SHAPES), required=True)
    parser.add_argument("--latent", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--variants", default=EAGER)
    parser.add_argument("--outputs", required=True, help="folder for each variant's output (compared by the parent)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tune", action="store_true", help="call mtu.utils.runtime.tune_allocator() first")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
