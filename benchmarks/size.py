"""Section 3: parameters and FLOPs per denoiser call, base vs MTU vs exported, SD1.5 and SDXL configs.

Everything runs on the meta device: shapes only, no memory, no arithmetic. FLOPs are what
`torch.utils.flop_counter.FlopCounterMode` counts (matmuls, convolutions, attention; elementwise ops
are not counted). On the meta device `scaled_dot_product_attention` takes its math path, whose
matmuls are counted; on CPU it dispatches to `_scaled_dot_product_flash_attention_for_cpu`, which
FlopCounterMode (torch 2.13) has no formula for and silently counts as zero.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import mtu
from benchmarks.configs import build_unet, unet_inputs, upcycled
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings
from mtu.layers import MTUFeedForward

TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]
NUM_EXPERTS = 4


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(model, args: tuple, kwargs: dict, **task) -> int:
    """FLOPs of one forward (meta tensors in, nothing computed)."""
    meta = lambda value: value.to("meta") if isinstance(value, torch.Tensor) else value  # noqa: E731
    args = tuple(meta(a) for a in args)
    kwargs = {k: {kk: meta(vv) for kk, vv in v.items()} if isinstance(v, dict) else meta(v) for k, v in kwargs.items()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs, **task)
    return counter.get_total_flops()


def router_flops(model: mtu.MTUModel, runs: int) -> int:
    """The FLOPs MTU adds, by formula: each router MLP (E -> H -> N, two addmms) once per run of same-task samples."""
    config = model.mtu_config
    per_router = 2 * (
        config.task_embedding_dim * config.router_hidden_dim + config.router_hidden_dim * config.num_experts
    )
    return runs * per_router * sum(isinstance(m, MTUFeedForward) for m in model.modules())


def ffn_rows(model: mtu.MTUModel, args: tuple, kwargs: dict) -> dict[MTUFeedForward, int]:
    """Tokens (rows) each FFN layer sees in one forward, recorded by hooks during a meta forward."""
    rows: dict[MTUFeedForward, int] = {}

    def record(module, inputs):
        rows[module] = inputs[0].numel() // inputs[0].shape[-1]

    layers = [m for m in model.modules() if isinstance(m, MTUFeedForward)]
    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        count_flops(model, args, kwargs, task="t2i")
    finally:
        for handle in handles:
            handle.remove()
    return rows


def scaling_share(rows: dict[MTUFeedForward, int]) -> float:
    """Elementwise multiplies of the expert scaling (single task: the cheaper of W_out's columns or the
    activations) over the FFN layers' multiply-adds."""
    scaling = multiply_adds = 0
    for layer, tokens in rows.items():
        proj_out = layer.base_layer.net[2]
        scaling += min(proj_out.weight.numel(), tokens * proj_out.in_features)
        multiply_adds += tokens * (layer.base_layer.net[0].proj.weight.numel() + proj_out.weight.numel())
    return scaling / multiply_adds


def measure_model(name: str, shapes: list[tuple[int, int]]) -> dict:
    """Parameters of base / MTU / exported, and their FLOPs for each (latent size, batch) in `shapes`."""
    base = build_unet(name, device="meta")
    model = upcycled(base, TASKS, num_experts=NUM_EXPERTS)
    exported = model.export("t2i")
    flops = []
    for latent, batch in shapes:
        args, kwargs = unet_inputs(name, batch, latent)
        counts = {
            "base": count_flops(base, args, kwargs),
            "MTU": count_flops(model, args, kwargs, task="t2i"),
            "exported": count_flops(exported, args, kwargs),
        }
        share = scaling_share(ffn_rows(model, args, kwargs))
        flops.append({"latent": latent, "batch": batch, **counts, "scaling_share": share})
    return {
        "params": {
            "base": count_parameters(base),
            "MTU": count_parameters(model),
            "exported": count_parameters(exported),
        },
        "flops": flops,
        "router_flops": router_flops(model, runs=1),
        "trainable": model.parameter_report().trainable,
    }


def run(settings: Settings) -> Section:
    models = [("sd15", "SD1.5", [(64, 1), (32, 2)]), ("sdxl", "SDXL", [(128, 1), (64, 1)])]
    if settings.quick:
        models = [("sd15", "SD1.5", [(8, 1)])]
    params_table = Table(["model", "base", "MTU", "MTU / base", "exported (t2i)", "MTU trainable"])
    flops_table = Table(
        [
            "model",
            "latent x batch",
            "base GFLOPs",
            "MTU GFLOPs",
            "exported GFLOPs",
            "MTU - base (FLOPs)",
            "router FLOPs (formula)",
            "scaling multiplies / FFN multiply-adds",
        ]
    )
    worst_params, flop_mismatch, exported_mismatch, worst_share = 0.0, 0, 0, 0.0
    for name, label, shapes in models:
        figures = measure_model(name, shapes)
        params = figures["params"]
        ratio = params["MTU"] / params["base"]
        worst_params = max(worst_params, ratio)
        params_table.rows.append(
            [label, params["base"], params["MTU"], f"{ratio:.5f}", params["exported"], figures["trainable"]]
        )
        for row in figures["flops"]:
            extra = row["MTU"] - row["base"]
            flop_mismatch = max(flop_mismatch, abs(extra - figures["router_flops"]))
            exported_mismatch = max(exported_mismatch, abs(row["exported"] - row["base"]))
            worst_share = max(worst_share, row["scaling_share"])
            flops_table.rows.append(
                [
                    label,
                    f"{row['latent']}x{row['latent']} x {row['batch']}",
                    row["base"] / 1e9,
                    row["MTU"] / 1e9,
                    row["exported"] / 1e9,
                    extra,
                    figures["router_flops"],
                    f"{row['scaling_share']:.2e}",
                ]
            )
    return Section(
        key="size",
        title="Size and FLOPs per denoiser call",
        method=(
            "Published UNet configs on the meta device (`benchmarks/configs.py`), MTU with "
            f"{len(TASKS)} tasks and N={NUM_EXPERTS}, exported for t2i. FLOPs from `FlopCounterMode` on meta tensors "
            "(on CPU it misses attention: torch has no formula for `_scaled_dot_product_flash_attention_for_cpu`). "
            "MTU's extra FLOPs are the router MLPs; the formula column is 2 x (E x H + H x N) per FFN layer per "
            "run of same-task samples (E = H = 64). SDXL is counted at its native 128x128 latent too: on the meta "
            "device size costs nothing."
        ),
        tables=[params_table, flops_table],
        targets=[
            Target("MTU params / base params, worst model", worst_params, "<=", 1.005),
            Target(
                "MTU FLOPs - base FLOPs - router FLOPs (absolute)",
                flop_mismatch,
                "<=",
                0,
                detail="MTU adds exactly the router FLOPs (table): under 1e-6 of the base",
                cause="an MTU op that FlopCounterMode counts beyond the routers; compare the per-op counts",
            ),
            Target("exported FLOPs - base FLOPs (absolute)", exported_mismatch, "<=", 0),
        ],
        notes=[
            "Not counted by FlopCounterMode (elementwise): scaling the d_ff hidden units by N w_i, done on W_out's "
            "columns or on the activations, whichever is smaller (last column: at most "
            f"{worst_share:.1e} of the FFN layers' multiply-adds), and the routers' SiLU and softmax.",
        ],
    )
