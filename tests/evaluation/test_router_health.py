"""Router health (DESIGN.md section 1): healthy, dead and saturated routers are told apart, on real routers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mtu
from mtu.cli.main import main
from mtu.evaluation.router_health import layer_health, router_health
from tests.core.tiny_models import tiny_sd_unet

TASKS = ["t2i", "edit", "sr", "remove"]


def model_with_routers(setter) -> mtu.MTUModel:
    """A tiny upcycled UNet whose every router is set by `setter(router, embeddings)`."""
    model = mtu.upcycle(tiny_sd_unet(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    with torch.no_grad():
        embeddings = torch.stack(model.embedding_list())
        for module in model.modules():
            if isinstance(module, mtu.layers.MTUFeedForward):
                setter(module.router, embeddings)
    return model


def healthy(router, embeddings):
    # Task t's logits favour expert t: last layer reads the hidden units, which differ per task.
    hidden = torch.nn.functional.silu(router.net[0](embeddings))  # (T, H)
    router.net[2].weight.copy_(torch.linalg.lstsq(hidden, 8.0 * torch.eye(4)).solution.T)


def dead(router, embeddings):
    router.net[0].weight.zero_()
    router.net[0].bias.fill_(-9.0)  # every hidden unit off for every task
    router.net[2].bias.copy_(torch.tensor([0.5, 0.1, 0.0, -0.2]))


def saturated(router, embeddings):
    router.net[2].weight.zero_()
    router.net[2].bias.zero_()
    router.net[2].bias[1] = 20.0  # expert 1 for everyone


@pytest.mark.parametrize(
    ("setter", "task_dependent", "dead_layers", "saturated_layers"),
    [(healthy, 1, 0, 0), (dead, 0, 1, 0), (saturated, 0, 0, 1)],
)
def test_router_health_tells_healthy_dead_and_saturated_apart(setter, task_dependent, dead_layers, saturated_layers):
    health = router_health(model_with_routers(setter))
    count = len(health.layers)
    assert count == 4  # the tiny UNet has four transformer blocks
    summary = health.summary()
    assert (summary["task_dependent"], summary["dead"], summary["saturated"]) == (
        task_dependent * count,
        dead_layers * count,
        saturated_layers * count,
    )
    assert f"{summary['task_dependent']} of {count} layers route by task" in health.summary_line()
    per_layer = health.to_dict()["per_layer"]
    assert len(per_layer) == count and all(len(layer["top"]) == len(TASKS) for layer in per_layer)


def test_a_fresh_upcycle_is_task_blind_not_dead_and_health_reads_a_task_subset():
    model = mtu.upcycle(tiny_sd_unet(), mtu.MTUConfig(tasks=TASKS))
    health = router_health(model, ["t2i", "sr"])
    assert health.tasks == ["t2i", "sr"] and {layer.state for layer in health.layers} == {"task-blind"}
    with pytest.raises(ValueError, match="unknown tasks"):
        router_health(model, ["depth"])


def test_layer_health_js_bounds():
    assert layer_health("a", np.eye(4)).js == pytest.approx(2.0)  # four tasks on four experts: log2 4 bits
    assert layer_health("a", np.full((4, 4), 0.25)).js == pytest.approx(0.0)
    assert not layer_health("a", np.eye(4)).saturated and layer_health("a", np.eye(4)[[1, 1]]).saturated
    assert math.isclose(layer_health("a", np.eye(4)[[0, 1]]).js, 1.0)


def test_no_bias_router_and_gate_dropout_keep_upcycling_exact_and_inference_deterministic():
    unet = tiny_sd_unet()
    sample, encoder = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 16)
    expected = unet(sample, 10, encoder).sample
    config = mtu.MTUConfig(tasks=["t2i", "sr"], router_bias=False, gate_dropout=0.5)
    model = mtu.upcycle(tiny_sd_unet(), config)
    router = next(m.router for m in model.modules() if isinstance(m, mtu.layers.MTUFeedForward))
    assert router.net[2].bias is None
    torch.testing.assert_close(model(sample, 10, encoder, task="t2i").sample, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        router.net[2].weight.normal_()
    model.train()
    drawn = {tuple(router(torch.ones(1, 64)).round(decimals=4).flatten().tolist()) for _ in range(30)}
    assert len(drawn) > 1  # training draws different expert subsets
    assert all(math.isclose(sum(row), 1.0, abs_tol=1e-3) for row in drawn)
    model.eval()
    assert torch.equal(router(torch.ones(1, 64)), router.probabilities(torch.ones(1, 64)))


def test_router_z_loss_is_zero_free_and_grows_with_saturation():
    model = model_with_routers(lambda router, embeddings: None)
    fresh = model.router_z_loss(["t2i", "sr", "sr"])
    assert fresh.item() == pytest.approx(math.log(4) ** 2, rel=1e-5)  # uniform logits 0: logsumexp = log N
    saturated_model = model_with_routers(saturated)
    assert saturated_model.router_z_loss(["t2i"]).item() > 100 * fresh.item()


@pytest.mark.parametrize(
    ("values", "message"),
    [({"gate_dropout": -0.1}, "gate_dropout must be a probability"), ({"router_bias": "no"}, "router_bias must be")],
)
def test_bad_router_options_are_one_clear_error(values, message):
    with pytest.raises(ValueError, match=message):
        mtu.MTUConfig(tasks=TASKS, **values)


def test_mtu_info_prints_router_health_and_its_json(tmp_path, capsys):
    from mtu.pipelines import MTUPipeline
    from tests.helpers import upcycle_tiny_sd_pipeline

    base = tmp_path / "base" / "pipeline"
    model = MTUPipeline.from_pretrained(upcycle_tiny_sd_pipeline(tmp_path), base=str(base)).unet
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, mtu.layers.MTUFeedForward):
                saturated(module.router, None)
    model.save_pretrained(tmp_path / "collapsed")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "collapsed"), "--base", str(base), "--routing"]) == 0
    out = capsys.readouterr().out
    count = sum(isinstance(m, mtu.layers.MTUFeedForward) for m in model.modules())
    assert f"0 of {count} layers route by task" in out and f"{count} saturated" in out
    table = [line for line in out.splitlines() if line.startswith(("down", "mid", "up"))]
    assert len(table) == count and all("saturated" in line for line in table)  # the per-layer table
    assert main(["info", str(tmp_path / "collapsed"), "--base", str(base), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["router_health"]["saturated"] == count and info["router_health"]["layers"] == count
