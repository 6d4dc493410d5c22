"""MTU and the baselines: function-preserving at init, the right parameters train, counts, save/load."""

from __future__ import annotations

import re

import pytest
import torch

import mtu
from mtu.baseline_models import AdapterSpec, activate, adapter_parameters
from mtu.cli.main import main
from mtu.config import MTUConfig
from mtu.loading import save_trained
from mtu.training.counts import parameter_counts, trainable_count
from mtu.training.methods import build_model
from tests.core.tiny_models import tiny_sd_unet
from tests.helpers import perturb
from tests.training.conftest import config_dict, write_config

TASKS = ["t2i", "edit", "inpaint"]
METHODS = {
    "mtu": None,
    "lora": AdapterSpec("lora", rank=2),
    "ia3": AdapterSpec("ia3"),
}


def inputs(model, task, seed=0):
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(2, 4, 8, 8, generator=generator)
    extra = torch.randn(2, model.task_in_channels(task) - 4, 8, 8, generator=generator)
    return torch.cat([latent, extra], 1), torch.tensor([10, 500]), torch.randn(2, 5, 16, generator=generator)


@pytest.mark.parametrize("method", list(METHODS))
def test_methods_start_as_the_base_model_and_train_only_their_parts(method):
    base = tiny_sd_unet()
    model = build_model(tiny_sd_unet(), method, MTUConfig(tasks=TASKS), METHODS[method])
    for task in TASKS:
        activate(model, task)
        sample, t, text = inputs(model, task)
        expected = base(sample[:, :4], t, text).sample
        with torch.no_grad():
            assert torch.allclose(model(sample, t, text, task=task).sample, expected, atol=1e-5), task
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all(
        ".convs." in n
        or ".norms." in n
        or "lora_" in n
        or "ia3_" in n
        or "experts" in n
        or "router" in n
        or "base_layer" in n
        or n.startswith("task_embeddings.")
        for n in trainable
    )
    if method != "mtu":
        assert not any(n.startswith("task_embeddings.") for n in trainable) and adapter_parameters(model.base_model)
        assert all(p.requires_grad for p in adapter_parameters(model.base_model).values())


@pytest.mark.parametrize("method", list(METHODS))
def test_save_and_load_trained_round_trip(method, tmp_path):
    model = build_model(tiny_sd_unet(), method, MTUConfig(tasks=TASKS), METHODS[method])
    perturb(model, seed=1)
    save_trained(model, tmp_path, method, METHODS[method])
    loaded = mtu.load(tiny_sd_unet(), tmp_path)
    for task in TASKS:
        activate(model, task), activate(loaded, task)
        sample, t, text = inputs(model, task)
        with torch.no_grad():
            assert torch.equal(model(sample, t, text, task=task).sample, loaded(sample, t, text, task=task).sample)


def test_lora_rank_matches_mtu_count_and_counts_match_built_models():
    config = MTUConfig(tasks=TASKS)
    counts = parameter_counts(tiny_sd_unet().config, config)
    rank = counts["lora_rank"]
    built = {
        r: trainable_count(build_model(tiny_sd_unet(), "lora", config, AdapterSpec("lora", r)))
        for r in (rank - 1, rank, rank + 1)
        if r
    }
    assert built[rank] == counts["lora"]
    assert min(built, key=lambda r: abs(built[r] - counts["mtu"])) == rank
    assert counts["mtu"] == trainable_count(build_model(tiny_sd_unet(), "mtu", config))
    assert counts["ia3"] == trainable_count(build_model(tiny_sd_unet(), "ia3", config, AdapterSpec("ia3")))
    single = build_model(tiny_sd_unet(), "mtu", MTUConfig(tasks=["edit"]))
    assert counts["single-task"]["edit"] == trainable_count(single)


def test_dry_run_prints_every_method(tiny_model, tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", config_dict(tiny_model, tmp_path / "run", method="lora"))
    assert main(["train", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    counts = parameter_counts(tiny_sd_unet().config, MTUConfig(tasks=["t2i", "edit", "sr", "remove", "inpaint"]))
    rows = {name: int(count.replace(",", "")) for name, count in re.findall(r"^(\S.*?)\s{2,}([\d,]+)", out, re.M)}
    assert rows["mtu"] == counts["mtu"] and rows["ia3"] == counts["ia3"]
    assert rows[f"lora (rank {counts['lora_rank']})"] == counts["lora"] and "<- this config" in out
    assert rows["single-task (inpaint)"] == counts["single-task"]["inpaint"]
    assert rows["single-task, all 5 models"] == sum(counts["single-task"].values())
    assert not (tmp_path / "run").exists()
