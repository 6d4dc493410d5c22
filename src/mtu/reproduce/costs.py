"""What each method costs: parameters, trainable parameters, FLOPs and CPU latency, side by side."""

from __future__ import annotations

import statistics
import time

import torch


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
    from mtu.training.counts import parameter_counts
    from mtu.training.methods import AdapterSpec, activate, build_model

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
