"""Issue-2 acceptance figures on full-size configs (random weights):

* parameters of SD1.5 and SDXL UNets before and after upcycling (5 tasks, N=4), FFN parameters equal;
* upcycling works for N in {1, 2, 4, 8, 16} on SD1.5;
* right after upcycling, every task reproduces the full SD1.5 UNet's output (relative error);
* the fused FFN at N=16 vs the plain diffusers FeedForward at SD1.5 dimensions (time ratio, one run).

Run: `python -m benchmarks.upcycle_check [--skip-forward]`.
"""

from __future__ import annotations

import argparse

import torch
from diffusers.models.attention import FeedForward

import mtu
from benchmarks.configs import build_unet, unet_inputs
from benchmarks.timing import compare
from mtu.layers import MTUFeedForward, TaskBatch, TaskContext

TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ffn_params(module: torch.nn.Module) -> int:
    return sum(count(m) for m in module.modules() if isinstance(m, FeedForward))


def parameter_rows() -> list[dict]:
    rows = []
    for name in ("sd15", "sdxl"):
        for experts in (1, 2, 4, 8, 16):
            base = build_unet(name, device="meta")
            base_total, base_ffn = count(base), ffn_params(base)
            model = mtu.upcycle(base, mtu.MTUConfig(tasks=TASKS, num_experts=experts))
            rows.append(
                {
                    "model": name,
                    "experts": experts,
                    "base_params": base_total,
                    "mtu_params": count(model),
                    "ratio": count(model) / base_total,
                    "ffn_equal": ffn_params(model) == base_ffn,
                    "trainable": model.parameter_report().trainable,
                }
            )
    return rows


@torch.no_grad()
def init_errors(latent_size: int = 32) -> dict[str, float]:
    """Relative error of each task's output vs the base, right after upcycling the full SD1.5 UNet."""
    args, kwargs = unet_inputs("sd15", batch=1, latent_size=latent_size)
    base = build_unet("sd15")
    expected = base(*args, **kwargs).sample
    model = mtu.upcycle(base, mtu.MTUConfig(tasks=TASKS, num_experts=4))  # same weights, now upcycled
    errors = {}
    for task in TASKS:
        extra = model.task_in_channels(task) - 4
        sample = torch.cat([args[0], torch.randn(1, extra, latent_size, latent_size)], dim=1)
        actual = model(sample, *args[1:], **kwargs, task=task).sample
        errors[task] = ((actual - expected).norm() / expected.norm()).item()
    return errors


def ffn_time_ratio(channels: int = 320, tokens: int = 4096, batch: int = 2, experts: int = 16) -> dict[str, float]:
    torch.manual_seed(0)
    plain = FeedForward(channels, activation_fn="geglu").eval()
    context = TaskContext()
    fused = MTUFeedForward(FeedForward(channels, activation_fn="geglu").eval(), experts, 64, 64, context)
    x = torch.randn(batch, tokens, channels)
    table = torch.nn.Embedding(batch, 64)
    single = TaskBatch.from_ids([0] * batch, table.weight, x.device)
    mixed = TaskBatch.from_ids(list(range(batch)), table.weight, x.device)

    def run_fused(batch_state: TaskBatch):
        with context.activate(batch_state):
            return fused(x)

    times = compare(
        {"plain": lambda: plain(x), "single": lambda: run_fused(single), "mixed": lambda: run_fused(mixed)}, repeats=15
    )
    return {"single_task_ratio": times["single"] / times["plain"], "mixed_task_ratio": times["mixed"] / times["plain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-forward", action="store_true", help="skip the full SD1.5 forward passes")
    args = parser.parse_args()
    print(f"{'model':<6}{'N':>4}{'base params':>16}{'MTU params':>16}{'ratio':>9}{'FFN equal':>11}{'trainable':>15}")
    for row in parameter_rows():
        print(
            f"{row['model']:<6}{row['experts']:>4}{row['base_params']:>16,}{row['mtu_params']:>16,}"
            f"{row['ratio']:>9.5f}{str(row['ffn_equal']):>11}{row['trainable']:>15,}"
        )
    if not args.skip_forward:
        print("\nSD1.5 UNet (random weights), 32x32 latent: relative error vs base right after upcycling")
        for task, error in init_errors().items():
            print(f"  {task:<8} {error:.2e}")
    ratios = ffn_time_ratio()
    print(
        "\nFused FFN, N=16, 320 channels x 4096 tokens x batch 2, time / plain FeedForward: "
        f"single task {ratios['single_task_ratio']:.3f}, mixed tasks {ratios['mixed_task_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
