"""Deviation (Fig. 2) and router (Fig. 5) analyses on a tiny UNet and hand-made router weights."""

from __future__ import annotations

import pytest
import torch

from mtu.evaluation.analysis import component_of, depth_of, deviation_analysis, layer_of, router_analysis
from tests.core.tiny_models import tiny_sd_unet


def perturbed(state, scales, seed=0):
    """A 'fine-tuned' copy: every float tensor moved by noise of its component's scale (default 0.01)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: value + scales.get(component_of(layer_of(key)), 0.01) * torch.randn(value.shape, generator=generator)
        if value.is_floating_point()
        else value
        for key, value in state.items()
    }


@pytest.mark.parametrize("measure", ["per_parameter", "raw"])
def test_ffn_ranks_first_when_it_moves_most(measure, tmp_path):
    pretrained = tiny_sd_unet().state_dict()
    tasks = {"edit": perturbed(pretrained, {"ffn": 0.2}, seed=1), "sr": perturbed(pretrained, {"ffn": 0.2}, seed=2)}
    analysis = deviation_analysis(pretrained, tasks, measure=measure)
    ranks = analysis.component_ranks()
    assert next(iter(ranks)) == "ffn"
    ffn = [layer for layer in analysis.layers if layer.component == "ffn"]
    for task in tasks:  # the FFNs hold the top ranks of every task
        assert sorted(layer.rank[task] for layer in ffn) == list(range(1, len(ffn) + 1))
    assert analysis.table().splitlines()[1].split()[0] == "ffn"
    rows, columns, matrix = analysis.grid()
    assert columns[0] == "in" and columns[-1] == "out" and columns.index("mid") > columns.index("down1.0")
    assert matrix.shape == (len(rows), len(columns))
    assert analysis.plot(tmp_path / "deviation.png").stat().st_size > 1000


def test_layers_components_and_depths():
    prefix = "down_blocks.1.attentions.0.transformer_blocks.0"
    assert layer_of(f"{prefix}.attn2.to_out.0.weight") == f"{prefix}.attn2"
    assert layer_of(f"{prefix}.ff.net.0.proj.weight") == f"{prefix}.ff"
    cases = {
        f"{prefix}.attn1": "self-attention",
        f"{prefix}.attn2": "cross-attention",
        f"{prefix}.ff": "ffn",
        f"{prefix}.norm3": "norm",
        "conv_norm_out": "norm",
        "down_blocks.1.attentions.0.proj_in": "proj in/out",
        "up_blocks.0.resnets.2.conv_shortcut": "resnet conv",
        "up_blocks.0.resnets.2.time_emb_proj": "time embedding",
        "time_embedding": "time embedding",
        "conv_in": "conv in/out",
        "conv_out": "conv in/out",
        "down_blocks.0.downsamplers.0.conv": "up/down sampler",
        "add_embedding": "time embedding",
        "transformer_blocks.3.attn": "self-attention",
        "pos_embed.proj": "other",
    }
    assert {name: component_of(name) for name in cases} == cases
    order = [
        "conv_in",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.0.downsamplers.0.conv",
        "down_blocks.1.attentions.0.proj_in",
        "mid_block.resnets.1.conv2",
        "up_blocks.0.resnets.2.conv1",
        "up_blocks.0.upsamplers.0.conv",
        "up_blocks.1.resnets.0.conv1",
        "conv_out",
    ]
    assert sorted(order, key=lambda name: depth_of(name)[0]) == order
    assert [depth_of(name)[1] for name in order] == [
        "in",
        "down0.0",
        "down0.ds",
        "down1.0",
        "mid",
        "up0.2",
        "up0.us",
        "up1.0",
        "out",
    ]


def test_grown_input_conv_is_compared_on_its_pretrained_slice():
    pretrained = tiny_sd_unet().state_dict()
    finetuned = dict(pretrained)
    weight = pretrained["conv_in.weight"]
    finetuned["conv_in.weight"] = torch.cat([weight + 1.0, torch.zeros_like(weight)], dim=1)  # 4 -> 8 input channels
    layer = next(
        layer for layer in deviation_analysis(pretrained, {"edit": finetuned}).layers if layer.name == "conv_in"
    )
    assert layer.partial and layer.raw["edit"] == pytest.approx(weight.numel() ** 0.5)  # every weight moved by 1


def test_deviation_rejects_mismatched_state_dicts():
    pretrained = tiny_sd_unet().state_dict()
    finetuned = {key: value for key, value in pretrained.items() if key != "conv_out.bias"}
    with pytest.raises(ValueError, match="1 keys only in the pre-trained one.*conv_out.bias"):
        deviation_analysis(pretrained, {"edit": finetuned})


def test_router_analysis_finds_the_sr_expert(tmp_path):
    tasks = ["t2i", "edit", "sr", "remove", "inpaint"]
    rows = {
        "t2i": [0.3, 0.3, 0.1, 0.3],
        "edit": [0.35, 0.3, 0.05, 0.3],
        "sr": [0.1, 0.1, 0.7, 0.1],
        "remove": [0.3, 0.35, 0.05, 0.3],
        "inpaint": [0.3, 0.3, 0.1, 0.3],
    }
    routing = {
        f"down_blocks.{b}.attentions.0.transformer_blocks.0.ff": torch.tensor([rows[task] for task in tasks])
        for b in range(3)
    }
    analysis = router_analysis(routing, tasks)
    expert, weight, excess = analysis.top_experts()["sr"]
    assert (expert, weight, excess) == (2, pytest.approx(0.7), pytest.approx(0.45))
    assert analysis.specialists() == {2: "sr"}
    summary = analysis.summary()
    assert "sr: expert 2 (0.70, +0.45 vs 1/4)" in summary and summary.endswith("specialised experts: expert 2 -> sr")
    assert "\n" not in summary
    assert analysis.plot(tmp_path / "router.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="5 task rows but 2 task names"):
        router_analysis(routing, ["t2i", "sr"])
