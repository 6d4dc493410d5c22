"""Issue 31: sizes read from a model folder are bounded and matched against the weights' header before any
tensor is made, so a damaged or hostile mtu_config.json cannot exhaust memory."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest

import mtu
from mtu.config import CONFIG_NAME, MTUConfig
from mtu.model_sizes import check_adapter
from tests.core.tiny_models import tiny_sd_unet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An MTU folder of the tiny SD UNet: t2i + edit, 2 experts, routers 8 wide, embeddings of 6."""
    folder = tmp_path_factory.mktemp("sizes") / "model"
    config = MTUConfig(tasks=["t2i", "edit"], num_experts=2, router_hidden_dim=8, task_embedding_dim=6)
    mtu.upcycle(tiny_sd_unet(), config).save_pretrained(folder)
    return folder


def edited(saved, tmp_path, **changes):
    """A copy of `saved` whose mtu_config.json has `changes` (None deletes a key)."""
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    config = json.loads((saved / CONFIG_NAME).read_text())
    config.update(changes)
    config = {key: value for key, value in config.items() if value is not None}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


@pytest.fixture
def never_built(monkeypatch):
    """Building the model from the config fails the test: every refusal must come before it."""

    def built(*args, **kwargs):
        raise AssertionError("the model was built from the config")

    monkeypatch.setattr(importlib.import_module("mtu.loading"), "upcycle", built)
    monkeypatch.setattr(importlib.import_module("mtu.loading"), "build_baseline", built)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"router_hidden_dim": 10**9}, r"router_hidden_dim = 1000000000 is over 65,536: no real model is this large"),
        ({"router_hidden_dim": 2 * 10**7}, "router_hidden_dim = 20000000 is over 65,536"),
        ({"task_embedding_dim": 10**6}, "task_embedding_dim = 1000000 is over 65,536"),
        ({"num_experts": 4096}, "num_experts = 4096 is over 1,024"),
        ({"tasks": None}, r"mtu_config.json: no 'tasks': an MTU config lists the tasks its weights serve"),
        ({"tasks": [{"name": "x", "extra_channels": 10**6}]}, "extra_channels of task 'x' = 1000000 is over 4,096"),
    ],
)
def test_absurd_sizes_are_refused_as_the_config_is_read(saved, tmp_path, never_built, changes, message):
    with pytest.raises(ValueError, match=message):
        mtu.load(tiny_sd_unet(), edited(saved, tmp_path, **changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"router_hidden_dim": 16}, r"router\.net\.0\.weight is \(8, 6\), but router_hidden_dim 16"),
        ({"task_embedding_dim": 7}, r"task_embeddings\.t2i is \(6,\), task_embedding_dim is 7"),
        ({"num_experts": 4}, r"router\.net\.2\.weight is \(2, 8\), but .* num_experts 4 make it \(4, 8\)"),
        ({"tasks": ["t2i", "edit", "sr"]}, r"embeddings of tasks \['edit', 't2i'\], the config lists"),
        ({"tasks": ["t2i", {"name": "edit", "conditioning": "masked_image"}]}, "'edit' takes 9 input channels"),
    ],
)
def test_sizes_must_match_the_weights_header(saved, tmp_path, never_built, changes, message):
    with pytest.raises(ValueError, match=rf"mtu_model.safetensors does not match its mtu_config.json: .*{message}"):
        mtu.load(tiny_sd_unet(), edited(saved, tmp_path, **changes))


def test_a_router_without_bias_still_loads(tmp_path):
    config = MTUConfig(tasks=["t2i"], num_experts=2, router_bias=False)
    mtu.upcycle(tiny_sd_unet(), config).save_pretrained(tmp_path / "model")
    assert mtu.load(tiny_sd_unet(), tmp_path / "model").mtu_config.router_bias is False


def test_an_adapter_rank_is_bounded_and_matched(tmp_path):
    where = tmp_path / "training_method.json"
    with pytest.raises(ValueError, match="adapter rank must be a whole number from 1 to 65,536, got 1000000000"):
        check_adapter("lora", {"method": "lora", "rank": 10**9}, None, where)
    with pytest.raises(ValueError, match="adapter rank must be a whole number from 1 to 65,536, got 0"):
        check_adapter("lora", {"method": "lora", "rank": 0}, None, where)
    message = r"a lora run's adapter is an object of \['alpha', 'dropout', 'method', 'rank'\] with method 'lora'"
    for adapter in ({"method": "lora", "bogus": 1}, {"method": "ia3"}, None, 5):
        with pytest.raises(ValueError, match=message):
            check_adapter("lora", adapter, None, where)
    shapes = {"ff.net.0.proj.lora_A.t2i.weight": (4, 8)}
    with pytest.raises(ValueError, match=r"adapter rank 8 does not match .* is \(4, 8\)"):
        check_adapter("lora", {"method": "lora", "rank": 8}, shapes, where)
    check_adapter("lora", {"method": "lora", "rank": 4}, shapes, where)
    check_adapter("ia3", {"method": "ia3", "rank": 0}, None, where)
    check_adapter("mtu", None, None, where)
