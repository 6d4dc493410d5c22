"""Router options in training: the collapse warning, the z-loss, and bad values named in one line."""

from __future__ import annotations

import json
import logging

import pytest

from mtu.training import TrainConfig, train
from tests.training.conftest import config_dict


def test_training_warns_once_when_a_router_collapses_and_logs_router_health(tiny_model, tmp_path, caplog):
    # One task and a router learning rate 3,000x the experts': its router saturates on one expert within steps.
    data = config_dict(
        tiny_model, tmp_path / "run", tasks=("t2i",), train={"max_steps": 6, "lr_multipliers": {"router": 3000.0}}
    )
    with caplog.at_level(logging.WARNING, logger="mtu.training.feedback"):
        train(TrainConfig.from_dict(data))
    warnings = [r.getMessage() for r in caplog.records if "no longer routes by task" in r.getMessage()]
    assert warnings, "no collapse warning"
    pairs = [tuple(message.split("the router of ")[1].split(" (")[0].split(" is ")) for message in warnings]
    assert len(pairs) == len(set(pairs))  # once per layer and state, though it stays collapsed for several logs
    assert all(message.startswith("step ") for message in warnings)
    logs = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    last = logs[-1]
    assert last["router/dead"] + last["router/saturated"] >= 1 and "router/mean_js_bits" in last


def test_no_bias_gate_dropout_and_z_loss_train_quietly(tiny_model, tmp_path, caplog):
    data = config_dict(
        tiny_model,
        tmp_path / "run",
        tasks=("t2i", "sr"),
        mtu={"router_bias": False, "gate_dropout": 0.1},
        train={"max_steps": 2, "router_z_loss": 1e-3},
    )
    with caplog.at_level(logging.WARNING, logger="mtu.training.feedback"):
        summary = train(TrainConfig.from_dict(data))
    assert summary["step"] == 2 and summary["loss"] == summary["loss"]  # finite
    assert not [r for r in caplog.records if "no longer routes by task" in r.getMessage()]


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("mtu", {"gate_dropout": -0.1}, "mtu.gate_dropout: must be a probability"),
        ("mtu", {"gate_dropout": 1.0}, "mtu.gate_dropout: must be a probability"),
        ("mtu", {"router_bias": "no"}, "mtu.router_bias: must be true or false"),
        ("train", {"router_z_loss": -1.0}, "train.router_z_loss: must be a finite number >= 0"),
        ("train", {"router_z_loss": "st-moe"}, "train.router_z_loss: must be a finite number >= 0"),
    ],
)
def test_bad_router_options_are_one_line_naming_the_key(tiny_model, tmp_path, section, values, message):
    data = config_dict(tiny_model, tmp_path / "run", **{section: values})
    with pytest.raises(ValueError, match=message) as error:
        TrainConfig.from_dict(data)
    assert "\n" not in str(error.value).strip() or str(error.value).count(message) == 1
