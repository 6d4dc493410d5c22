"""Section 6: one AdamW step — MTU vs full fine-tuning vs LoRA on the FFNs: time per step and peak memory.

Each variant runs in its own subprocess (`python -m benchmarks.training --variant ...`), because a
process's resident memory never shrinks: its peak (max RSS) is the variant's alone. Variants alternate
in rounds, and time ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig

import mtu
from benchmarks.configs import build_unet, unet_inputs
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from benchmarks.workers import max_rss_bytes, run_worker

VARIANTS = ["full fine-tuning", "MTU", "LoRA (FFNs)"]
TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]
LORA_RANK = 16


def prepare(variant: str, name: str) -> torch.nn.Module:
    """The model of one variant, with only that variant's parameters trainable."""
    unet = build_unet(name).train()
    if variant == "full fine-tuning":
        return unet.requires_grad_(True)
    if variant == "MTU":
        return mtu.upcycle(unet, mtu.MTUConfig(tasks=TASKS, num_experts=4)).train()
    if variant == "LoRA (FFNs)":
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=["ff.net.0.proj", "ff.net.2"]))
        return unet
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def train_steps(variant: str, name: str, latent: int, batch: int, steps: int, warmup: int) -> dict:
    """Time `steps` AdamW steps after `warmup` (the first step also allocates the optimizer state)."""
    model = prepare(variant, name)
    built_rss = max_rss_bytes()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    args, kwargs = unet_inputs(name, batch, latent)
    target = torch.randn_like(args[0])
    task = {"task": "t2i"} if variant == "MTU" else {}
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(*args, **kwargs, **task).sample, target)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "step_seconds": times,
        "peak_rss": max_rss_bytes(),
        "rss_after_build": built_rss,
        "trainable": sum(p.numel() for p in trainable),
        "with_grad": sum(p.numel() for p in model.parameters() if p.grad is not None),
    }


def worker_arguments(variant: str, name: str, latent: int, batch: int, steps: int, threads: int) -> list[str]:
    return [
        "--variant",
        variant,
        "--config",
        name,
        "--latent",
        str(latent),
        "--batch",
        str(batch),
        "--steps",
        str(steps),
        "--warmup",
        "1",
        "--threads",
        str(threads),
    ]


def run(settings: Settings) -> Section:
    name, latent, batch = ("tiny", 16, 2) if settings.quick else ("sd15", 16, 2)
    rounds, steps = (1, 1) if settings.quick else (2, 2)
    results: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for index in range(rounds):
        order = VARIANTS[index % 3 :] + VARIANTS[: index % 3]
        if settings.quick:  # a smoke test: no subprocess start-up (seconds each); peaks are not per variant
            for variant in order:
                results[variant].append(train_steps(variant, name, latent, batch, steps, warmup=1))
            continue
        for variant in order:
            arguments = worker_arguments(variant, name, latent, batch, steps, settings.threads)
            results[variant].append(run_worker("benchmarks.training", arguments))
    step = {v: [statistics.median(r["step_seconds"]) for r in results[v]] for v in VARIANTS}
    peak = {v: max(r["peak_rss"] for r in results[v]) for v in VARIANTS}
    full = "full fine-tuning"
    time_ratio = {v: statistics.median(a / b for a, b in zip(step[v], step[full])) for v in VARIANTS}
    table = Table(
        [
            "variant",
            "trainable params",
            "params with .grad after a step",
            "time / full",
            "median s per step",
            "peak RSS (GiB)",
            "peak / full",
            "RSS after building the model (GiB)",
        ]
    )
    for v in VARIANTS:
        last = results[v][-1]
        table.rows.append(
            [
                v,
                last["trainable"],
                last["with_grad"],
                time_ratio[v],
                statistics.median(step[v]),
                peak[v] / 2**30,
                peak[v] / peak[full],
                last["rss_after_build"] / 2**30,
            ]
        )
    label = "SD1.5" if name == "sd15" else "tiny SD-layout"
    return Section(
        key="training",
        title="Training cost: one AdamW step",
        method=(
            f"{label} UNet (random weights), {latent}x{latent} latent, batch {batch}, fp32, MSE loss against a random "
            "target, `torch.optim.AdamW` with default arguments over the trainable parameters, "
            "`zero_grad(set_to_none=True)`. MTU: 5 tasks, N=4, task t2i (experts, routers, task embeddings, task "
            f"norms and input convs train). LoRA: rank {LORA_RANK} on both projections of every FFN (peft via "
            f"diffusers' `add_adapter`). Each variant runs in its own process ({rounds} round(s), variants "
            "alternating; "
            f"{steps} timed steps after 1 warm-up step each); peak memory is that process's max RSS"
            f"{' (--quick runs them all in one process: the peaks are not per variant)' if settings.quick else ''}."
        ),
        tables=[table],
        targets=[
            Target(
                "MTU step time / full fine-tuning",
                time_ratio["MTU"],
                "<=",
                0.7,
                cause="MTU trains the input conv, so the backward pass still runs through the whole UNet; "
                "only the frozen layers' weight gradients and their optimizer updates are saved",
            ),
            Target(
                "MTU peak memory / full fine-tuning",
                peak["MTU"] / peak[full],
                "<=",
                0.5,
                cause="see the RSS column: the frozen weights are shared by both; what MTU saves is the "
                "gradients and AdamW moments of the frozen parameters",
            ),
        ],
        notes=[
            "Peak memory is the process's VmHWM: it includes the Python/torch runtime (~0.4 GiB) and the model's "
            "weights "
            "(the RSS after building, 3.4 GiB of fp32 weights for SD1.5); everything above that is what the variant's "
            "training step adds: gradients, AdamW moments and activations.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one training-cost measurement (a worker of `python -m benchmarks`)")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--config", default="sd15")
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(train_steps(args.variant, args.config, args.latent, args.batch, args.steps, args.warmup)))


if __name__ == "__main__":
    main()
