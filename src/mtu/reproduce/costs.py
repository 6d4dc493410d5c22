"""What each method costs: parameters, trainable parameters, FLOPs and CPU latency, side by side."""

from __future__ import annotations

import statistics
import time

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTokenizer

from mtu.assets import resolve_model_path
from mtu.baseline_models import activate
from mtu.config import MTUConfig
from mtu.methods import AdapterSpec, Method
from mtu.training.counts import parameter_counts
from mtu.training.methods import build_model
from mtu.utils.modules import count_parameters

# The methods whose denoisers are compared with the base, in the table's order.
COMPARED = (Method.SINGLE_TASK, Method.MTU, Method.LORA, Method.IA3)


@torch.no_grad()
def measure_costs(base_model: str, tasks: tuple[str, ...], num_experts: int, repeats: int = 15) -> dict[str, dict]:
    """Params, trainable params, GFLOPs and CPU latency (relative to the base) of each method's denoiser.

    Every model is built from the base UNet here (trained weights do not change the cost) and the
    models are timed alternately in this process, one t2i call at batch 1 each, so the ratios are
    measured side by side whatever machine each run trained on.
    """
    path = resolve_model_path(base_model)

    def base_unet():
        return UNet2DConditionModel.from_pretrained(path, subfolder="unet").eval()

    config = MTUConfig(tasks=list(tasks), num_experts=num_experts)
    rank = parameter_counts(base_unet().config, config)["lora_rank"]
    models: dict[str, torch.nn.Module] = {"base": base_unet()}
    for method in COMPARED:
        method_config = MTUConfig(tasks=["t2i"], num_experts=num_experts) if method.one_task else config
        adapter = AdapterSpec(method, rank if method.ranked else 0) if method.adapters else None
        models[method.value] = build_model(base_unet(), method, method_config, adapter)
    for method in COMPARED:
        if method.adapters:
            activate(models[method.value], "t2i")  # the t2i adapter answers, as at inference
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
        trainable = 0 if name == "base" else count_parameters(models[name], trainable=True)
        costs[name] = {"params": count_parameters(models[name]), "trainable": trainable,
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
