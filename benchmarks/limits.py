"""Section 7: how far the SD1.5 UNet forward is from this machine's limit, and where the time goes.

The limit is a large fp32 matmul (torch.mm: MKL's SGEMM) timed in the same repetitions as the UNet,
with a large 3x3 convolution (oneDNN) beside it: on some CPUs the two libraries reach very different
rates. The profile splits one forward by kind of op, with each kind's FLOP/s. Two causes are
measured directly:

* oneDNN re-lays out every convolution weight on every eager call (its verbose log is parsed);
* with glibc's default policy, large blocks are mmap'd per allocation and the heap top is trimmed on
  free, so every forward page-faults (and the kernel zeroes) its activations again. A worker process
  started with `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>` repeats the rates:
  `python -m benchmarks.limits --config sd15 --latent 32 --batch 2`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import tempfile
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.configs import base_unet, build_unet, unet_inputs, unet_name, upcycled
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.timing import measure
from benchmarks.workers import GLIBC_KEEP_FREED_MEMORY, run_worker

# Kinds of aten op: (kind, name fragments of its profiled ops, FlopCounterMode ops counted on the meta device).
# On the meta device attention runs its math path, whose bmm's stand for the fused CPU kernel's FLOPs.
KINDS = [
    ("attention", ("scaled_dot_product", "_flash_attention", "bmm", "softmax"), ("aten.bmm", "aten.baddbmm")),
    ("convolution", ("conv",), ("aten.convolution",)),
    ("GEMM (linear)", ("addmm", "aten::mm", "aten::linear", "matmul"), ("aten.addmm", "aten.mm")),
    ("norm", ("group_norm", "layer_norm"), ()),
]
CONV_LIMIT = (512, 64)  # channels in and out, spatial size: a 3x3 convolution large enough for oneDNN's best rate


def kind_of(op: str) -> str:
    for kind, fragments, _ in KINDS:
        if any(fragment in op for fragment in fragments):
            return kind
    return "elementwise, copies, other"


def flops_by_kind(model, args: tuple, kwargs: dict) -> dict[str, int]:
    """FLOPs of one forward per kind, counted on a meta-device copy of the model's architecture."""
    meta = lambda value: value.to("meta") if isinstance(value, torch.Tensor) else value  # noqa: E731
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*(meta(a) for a in args), **{k: meta(v) for k, v in kwargs.items()})
    counts = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    return {kind: sum(counts.get(op, 0) for op in ops) for kind, _, ops in KINDS}


def profile_forward(call) -> dict[str, float]:
    """Self CPU seconds of one call per kind of aten op (leaf self times: nothing counted twice)."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    return dict(seconds)


def onednn_breakdown(call, batch: int) -> dict[str, float]:
    """Seconds oneDNN spends in one call, by primitive: convolutions, weight reorders, activation reorders.

    oneDNN's verbose log (one line per executed primitive, ending in its time in ms) goes to file
    descriptor 1; it is redirected to a temporary file for the call and parsed.
    """
    seconds = {"convolution kernels": 0.0, "weight reorders": 0.0, "activation reorders": 0.0}
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 1)
        try:
            with torch.inference_mode(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                call()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        for line in log:
            fields = line.strip().split(",")
            if len(fields) < 7 or fields[2:4] != ["primitive", "exec"]:
                continue
            kind, shape, milliseconds = fields[5], fields[-2], float(fields[-1])
            if kind == "convolution":
                seconds["convolution kernels"] += milliseconds / 1e3
            elif kind == "reorder":  # an activation's first dimension is the batch, a weight's its out-channels
                activation = shape.split("x")[0] == str(batch)
                seconds["activation reorders" if activation else "weight reorders"] += milliseconds / 1e3
    return seconds


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def forward_rates(model, args: tuple, kwargs: dict, size: int, repeats: int, channels_last: bool = False) -> dict:
    """Median seconds of the matmul, the reference convolution and the forward, interleaved; page faults of a forward.

    With `channels_last`, a copy of the model in channels-last memory format is timed in the same repetitions.
    """
    left, right = torch.randn(size, size), torch.randn(size, size)
    channels, spatial = CONV_LIMIT
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
    image = torch.randn(1, channels, spatial, spatial)
    variants = {
        "matmul": lambda: torch.mm(left, right),
        "conv": lambda: conv(image),
        "forward": lambda: model(*args, **kwargs),
    }
    if channels_last:
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        nhwc_args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        variants["channels_last"] = lambda: nhwc(*nhwc_args, **kwargs)
    timing = measure(variants, repeats, warmup=1)
    with torch.inference_mode():
        before = page_faults()
        model(*args, **kwargs)
        faults = page_faults() - before
    reference_flops = {"matmul_flops": 2 * size**3, "conv_flops": 2 * spatial * spatial * channels * channels * 9}
    rates = {name: timing.median(name) for name in variants} | {"faults": faults} | reference_flops
    if channels_last:
        rates["channels_last_ratio"] = timing.ratio("channels_last", "forward")
    return rates


def rates_table(rates: dict[str, dict], size: int, unet_flops: int, caption: str) -> Table:
    channels, spatial = CONV_LIMIT
    table = Table(
        [
            "process",
            f"matmul {size}^3 GFLOP/s (MKL)",
            f"3x3 conv {channels}ch {spatial}x{spatial} GFLOP/s (oneDNN)",
            "UNet forward GFLOP/s",
            "UNet / matmul",
            "UNet / conv",
            "UNet s per forward",
            "page faults per forward",
        ],
        caption=caption,
    )
    for process, rate in rates.items():
        unet = unet_flops / rate["forward"]
        matmul, conv = rate["matmul_flops"] / rate["matmul"], rate["conv_flops"] / rate["conv"]
        table.rows.append(
            [process, matmul / 1e9, conv / 1e9, unet / 1e9, unet / matmul, unet / conv, rate["forward"], rate["faults"]]
        )
    return table


def kinds_table(base_seconds: dict, mtu_seconds: dict, flops: dict, forward_seconds: float) -> Table:
    rows = []
    for kind in sorted(set(base_seconds) | set(mtu_seconds), key=lambda k: -base_seconds.get(k, 0)):
        seconds = base_seconds.get(kind, 0)
        rate = flops.get(kind, 0) / seconds / 1e9 if seconds and flops.get(kind) else ""
        rows.append([kind, seconds, seconds / forward_seconds, rate, mtu_seconds.get(kind, 0)])
    return Table(
        ["op kind", "base: seconds", "base: share of a forward", "base: GFLOP/s", "MTU live: seconds"],
        rows,
        caption="one profiled forward each (torch.profiler, self CPU time of aten ops; FLOPs per kind from the meta "
        "count)",
    )


def run(settings: Settings) -> Section:
    name = unet_name(settings.quick)
    latent, batch, size = (16, 2, 512) if settings.quick else (32, 2, 2048)
    base = base_unet(name)
    args, kwargs = unet_inputs(name, batch, latent)
    flops = flops_by_kind(build_unet(name, device="meta"), args, kwargs)
    unet_flops = sum(flops.values())
    rates = {"this process (glibc default)": forward_rates(base, args, kwargs, size, settings.scaled(5).repeats, True)}
    if not settings.quick:  # a process of its own: the allocator policy is fixed at startup
        arguments = [
            "--config",
            name,
            "--latent",
            str(latent),
            "--batch",
            str(batch),
            "--matmul",
            str(size),
            "--repeats",
            str(settings.scaled(3).repeats),
            "--threads",
            str(settings.threads),
        ]
        rates["worker, glibc keeping freed memory"] = run_worker(
            "benchmarks.limits", arguments, env=GLIBC_KEEP_FREED_MEMORY
        )
    forward_seconds = rates["this process (glibc default)"]["forward"]
    onednn = onednn_breakdown(lambda: base(*args, **kwargs), batch)
    model = upcycled(base, ["t2i", "edit", "sr", "remove", "inpaint"])
    base_kinds = profile_forward(lambda: base(*args, **kwargs))
    mtu_kinds = profile_forward(lambda: model(*args, **kwargs, task="t2i"))
    rate = rates_table(
        rates, size, unet_flops, f"UNet forward {latent}x{latent} x {batch}: {unet_flops / 1e9:.1f} GFLOP"
    )
    return Section(
        key="limits",
        title="Distance to the machine's limit",
        method=(
            f"FLOP/s of the {'SD1.5' if name == 'sd15' else 'tiny'} UNet forward ({latent}x{latent} latent, "
            f"batch {batch}; "
            "FLOPs from section 3's meta-device count, attention included) against a large fp32 matmul and a large "
            f"3x3 convolution timed interleaved with it, torch threads = {settings.threads}."
        ),
        tables=[
            rate,
            kinds_table(base_kinds, mtu_kinds, flops, forward_seconds),
            Table(
                ["oneDNN primitive (one base forward)", "seconds", "share of a forward"],
                [[kind, seconds, seconds / forward_seconds] for kind, seconds in onednn.items()],
                caption="from oneDNN's verbose log (`torch.backends.mkldnn.verbose`)",
            ),
        ],
        targets=[
            Target(
                "UNet forward FLOP/s / matmul FLOP/s",
                rate.rows[0][4],
                "",
                0,
                detail=f"vs the oneDNN convolution: {rate.rows[0][5]:.2f}",
            )
        ],
        notes=findings(rates, onednn, forward_seconds),
    )


def gemm_finding(gap: float) -> str:
    """Whether MKL's matmul is a fair limit here: `gap` is the oneDNN convolution's FLOP/s over the matmul's."""
    if gap < 1.2:
        return (
            f"GEMM: oneDNN's 3x3 convolution runs at {gap:.2f}x the matmul's FLOP/s: the matmul is a fair limit here."
        )
    return (
        f"GEMM: oneDNN's 3x3 convolution runs at {gap:.1f}x the FLOP/s of torch's CPU matmul (MKL's SGEMM, which "
        "the linear layers use too), so the matmul is not this CPU's limit (compare the per-kind GFLOP/s). A gap like "
        "this is consistent with MKL not dispatching its AVX-512 kernels on a non-Intel CPU. Closing it: run the "
        "linear layers through oneDNN (`torch.compile` with inductor's `freezing=True` packs them as mkldnn linears; "
        "IPEX does the same) or use a torch built on a BLAS tuned for the CPU."
    )


def findings(rates: dict[str, dict], onednn: dict[str, float], forward_seconds: float) -> list[str]:
    """What the measurements say about the gap, and what would close it (none of it is mtu's code)."""
    default = rates["this process (glibc default)"]
    gap = (default["conv_flops"] / default["conv"]) / (default["matmul_flops"] / default["matmul"])
    notes = [gemm_finding(gap)] + [
        f"Convolution weights: eager oneDNN convolutions reorder each weight from PyTorch's OIHW into a blocked "
        f"layout on every call and discard it: {onednn['weight reorders'] / forward_seconds:.0%} of the forward here "
        "(a 3x3 convolution at the 1280-channel levels carries 59-118 MB of weights for 4x4 or 8x8 activations). "
        "Prepacked weights (`torch.compile` with freezing, IPEX) remove the reorders.",
        f"Channels-last (`unet.to(memory_format=torch.channels_last)`, same repetitions): "
        f"{default['channels_last_ratio']:.3f}x the default forward's time.",
    ]
    keep = rates.get("worker, glibc keeping freed memory")
    if keep:
        notes.append(
            f"Page faults: {default['faults']:,} per forward in this process vs {keep['faults']:,} in a worker whose "
            "glibc keeps freed memory; there the forward takes "
            f"{(keep['forward'] / keep['matmul']) / (default['forward'] / default['matmul']):.2f}x as long as here, "
            "each normalised by the matmul timed beside it (two processes: indicative). glibc "
            "returns activation memory to the kernel after each forward and the next forward faults it back in, "
            "zeroed. Closed for sampling: `mtu generate` / `serve` / `eval` apply these settings at start "
            "(`mtu.utils.runtime.tune_allocator`; "
            "measured in the section 'PyTorch on CPU'); this process, `python -m benchmarks`, keeps glibc's defaults."
        )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description="UNet forward and reference rates in this process (a worker of `python -m benchmarks`)"
    )
    parser.add_argument("--config", default="sd15")
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--matmul", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_unet(args.config)
    inputs, kwargs = unet_inputs(args.config, args.batch, args.latent)
    print(json.dumps(forward_rates(model, inputs, kwargs, args.matmul, args.repeats)))


if __name__ == "__main__":
    main()
