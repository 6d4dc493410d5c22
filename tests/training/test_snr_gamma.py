"""Min-SNR-gamma loss weighting (`train.snr_gamma`): the weights, a run with it, bad values in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler

from mtu.training import TrainConfig, train
from mtu.training.step import snr_weights
from tests.training.conftest import config_dict


def _run(gamma, prediction_type="epsilon"):
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    return SimpleNamespace(config=SimpleNamespace(train=SimpleNamespace(snr_gamma=gamma)), noise_scheduler=scheduler)


def test_weights_cap_low_noise_timesteps_and_leave_high_noise_ones():
    timesteps = torch.tensor([0, 10, 500, 999])
    weights = snr_weights(_run(5.0), timesteps)
    alphas = _run(5.0).noise_scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    assert torch.allclose(weights, torch.clamp(snr, max=5.0) / snr, rtol=1e-4)
    assert weights[0] < 0.01 and weights[-1] == pytest.approx(1.0)  # t=0: SNR ~ 1e4; t=999: SNR << 5
    v_weights = snr_weights(_run(5.0, "v_prediction"), timesteps)
    assert torch.all(v_weights < 1.0) and torch.all(v_weights > 0)
    assert snr_weights(_run(None), timesteps) == 1.0


def test_a_run_with_snr_gamma_trains_and_its_loss_is_the_weighted_one(tiny_model, tmp_path):
    losses = {}
    for gamma in (None, 0.01):  # a tiny gamma weights every sample far below 1
        train_section = {"max_steps": 1, "snr_gamma": gamma}
        data = config_dict(tiny_model, tmp_path / f"run-{gamma}", tasks=("t2i",), train=train_section)
        losses[gamma] = train(TrainConfig.from_dict(data))["loss"]
    assert losses[0.01] < losses[None] / 2


@pytest.mark.parametrize("value", [0, -5, "five", float("inf")])
def test_bad_snr_gamma_is_one_line_naming_the_key(tiny_model, tmp_path, value):
    data = config_dict(tiny_model, tmp_path / "run", train={"snr_gamma": value})
    with pytest.raises(ValueError, match="train.snr_gamma: must be a finite number > 0") as error:
        TrainConfig.from_dict(data)
    assert str(error.value).count("train.snr_gamma") == 1
