"""The all-tasks denoiser (per-task weights gathered by task id) equals the MTU model, on every denoiser layout."""

from __future__ import annotations

import pytest
import torch

import mtu
from mtu.deploy import build_all_task_denoiser
from tests.core.tiny_models import CASES, output_of, relative_error
from tests.helpers import TASKS, perturb

MIXED = ["t2i", "edit", "inpaint", "t2i", "sr", "remove"]  # repeats and changes of task, every channel count


def _model(case) -> mtu.MTUModel:
    return perturb(mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4)), scale=0.05).eval()


def _padded_sample(model, tasks: list[str], seed: int = 0) -> torch.Tensor:
    samples = [
        torch.randn(1, model.task_in_channels(task), 8, 8, generator=torch.Generator().manual_seed(seed + i))
        for i, task in enumerate(tasks)
    ]
    return mtu.concat_task_inputs(samples)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_all_task_denoiser_equals_the_mtu_model_for_every_task_and_a_mixed_batch(case):
    model = _model(case)
    gathered = build_all_task_denoiser(model)
    assert gathered.task_names == TASKS and gathered.in_channels == 9
    for tasks in [[task] * 2 for task in TASKS] + [MIXED]:
        args, kwargs = case.inputs(_padded_sample(model, tasks), seed=1)
        ids = torch.tensor([TASKS.index(task) for task in tasks])
        with torch.no_grad():
            expected = output_of(model(*args, **kwargs, task=tasks))
            actual = output_of(gathered(*args, **kwargs, task_ids=ids))
        assert relative_error(actual, expected) <= 1e-5, (case.name, tasks)


def test_no_router_runs_at_inference():
    model = _model(CASES[0])
    gathered = build_all_task_denoiser(model)
    names = {type(module).__name__ for module in gathered.modules()}
    assert not names & {"MTUFeedForward", "TaskRouter", "TaskLayerNorm", "TaskInputConv"}
    assert {"ScaledFeedForward", "GatheredLayerNorm", "GatheredConv2d"} <= names
    routed = [m for m in gathered.modules() if type(m).__name__ == "ScaledFeedForward"]
    assert len(routed) == len(model.routing_weights()) and routed[0].scales.shape[0] == len(TASKS)


def test_a_fold_that_does_not_match_the_router_is_refused(monkeypatch):
    model = _model(CASES[0])
    weights = model.routing_weights()
    monkeypatch.setattr(model, "routing_weights", lambda: {name: w.flip(1) for name, w in weights.items()})
    with pytest.raises(ValueError, match="expert layout changed"):
        build_all_task_denoiser(model)


def test_experts_a_router_switched_off_fold_to_finite_weights():
    """A trained router can put exactly 0 on an expert (softmax underflow): expert 0 here for every task,
    expert 1 for some tasks only. shapes-mtu has such layers; dividing by those zeros made NaN weights."""
    model = _model(CASES[0])
    with torch.no_grad():
        for router in [m for m in model.modules() if type(m).__name__ == "TaskRouter"]:
            router.net[2].bias[0] = -1e4
            router.net[2].weight[1] *= 1e4
    weights = torch.cat(list(model.routing_weights().values()))
    assert (weights[:, 0] == 0).all() and (weights[:, 1] == 0).any() and (weights[:, 1] > 0.5).any()
    gathered = build_all_task_denoiser(model)
    assert all(torch.isfinite(p).all() for p in gathered.parameters())
    case = CASES[0]
    args, kwargs = case.inputs(_padded_sample(model, MIXED), seed=1)
    with torch.no_grad():
        expected = output_of(model(*args, **kwargs, task=MIXED))
        actual = output_of(gathered(*args, **kwargs, task_ids=torch.tensor([TASKS.index(t) for t in MIXED])))
    assert relative_error(actual, expected) <= 1e-5
