"""The latent cache: the same losses as encoding every step, refused when stale, resumable when killed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mtu.training import TrainConfig, train
from mtu.training import cache as cache_module
from tests.helpers import save_tiny_sdxl_pipeline, write_gqa_inpaint_jsonl
from tests.training.conftest import ALL_TASKS, config_dict


def _losses(output_dir: Path) -> list[dict]:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k.startswith("loss")} for line in lines]


def _run(model, output_dir: Path, cache_dir: Path, cache: str, tasks=ALL_TASKS, **sections) -> dict:
    data = {"pool_size": 24, "cache": cache, "cache_dir": str(cache_dir), **sections.pop("data", {})}
    config = config_dict(model, output_dir, tasks=tasks, data=data, **sections)
    config["train"]["max_steps"] = 3
    return train(TrainConfig.from_dict(config))


def _assert_same_losses(a: Path, b: Path) -> None:
    first, second = _losses(a), _losses(b)
    assert len(first) == len(second) == 3
    for x, y in zip(first, second):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key


def test_cached_training_matches_encoding_every_step(tiny_model, tmp_path):
    plain = _run(tiny_model, tmp_path / "plain", tmp_path / "cache", "none")
    cached = _run(tiny_model, tmp_path / "cached", tmp_path / "cache", "latents")
    _assert_same_losses(tmp_path / "plain", tmp_path / "cached")
    first = load_file(Path(plain["model"]) / "mtu_model.safetensors")
    second = load_file(Path(cached["model"]) / "mtu_model.safetensors")
    assert all(torch.allclose(first[k], second[k], atol=1e-5) for k in first)
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.safetensors"))
    assert files == sorted(ALL_TASKS)
    assert not [p for p in (tmp_path / "cache").rglob(".*") if not p.name.endswith(".lock")]  # no parts, no temps
    # A second run reuses the files (they are not rewritten).
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.safetensors")}
    _run(tiny_model, tmp_path / "again", tmp_path / "cache", "latents")
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.safetensors")}
    _assert_same_losses(tmp_path / "cached", tmp_path / "again")


def test_cache_of_other_weights_is_refused(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _run(model, tmp_path / "first", tmp_path / "cache", "latents", tasks=("t2i",))
    vae_file = next((model / "vae").glob("*.safetensors"))
    tensors = load_file(vae_file)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.01  # the model retrained in place: its old cache no longer applies
    save_file(tensors, vae_file)
    with pytest.raises(ValueError, match="latent cache .* different weights .*delete it"):
        _run(model, tmp_path / "second", tmp_path / "cache", "latents", tasks=("t2i",))


def test_corrupt_cache_names_the_file(tiny_model, tmp_path):
    _run(tiny_model, tmp_path / "first", tmp_path / "cache", "latents", tasks=("t2i",))
    path = next((tmp_path / "cache").rglob("t2i-*.safetensors"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"latent cache {path} is unreadable"):
        _run(tiny_model, tmp_path / "second", tmp_path / "cache", "latents", tasks=("t2i",))


def test_a_killed_fill_resumes_from_its_parts(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "CHUNK", 8)  # 24 entries: 3 parts
    encode, calls = cache_module._encode_entries, []

    def killed_after_two_parts(components, pool, spec, indices):
        calls.append(indices.start)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill would, mid-fill
        return encode(components, pool, spec, indices)

    monkeypatch.setattr(cache_module, "_encode_entries", killed_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model, tmp_path / "killed", tmp_path / "cache", "latents", tasks=("edit",))
    assert not list((tmp_path / "cache").rglob("edit-*.safetensors"))  # no final file from a partial fill
    calls.clear()
    _run(tiny_model, tmp_path / "resumed", tmp_path / "cache", "latents", tasks=("edit",))
    assert calls == [16]  # only the missing part was encoded
    _run(tiny_model, tmp_path / "plain", tmp_path / "cache", "none", tasks=("edit",))
    _assert_same_losses(tmp_path / "plain", tmp_path / "resumed")


def test_dataset_records_and_sdxl_are_cached_alike(tmp_path):
    model = save_tiny_sdxl_pipeline(tmp_path)
    records = write_gqa_inpaint_jsonl(tmp_path / "gqa")
    tasks = {"t2i": {"source": {"type": "shapes"}}, "remove": {"source": {"type": "jsonl", "path": str(records)}}}
    for name, cache in (("plain", "none"), ("cached", "latents")):
        data = config_dict(
            model,
            tmp_path / name,
            tasks=("t2i",),
            data={"pool_size": 8, "cache": cache, "cache_dir": str(tmp_path / "cache")},
            train={"max_steps": 3},
        )
        data["tasks"] = tasks
        train(TrainConfig.from_dict(data))
    _assert_same_losses(tmp_path / "plain", tmp_path / "cached")


def test_cache_without_a_pool_is_a_config_error(tiny_model, tmp_path):
    data = config_dict(tiny_model, tmp_path / "run", data={"cache": "latents"})
    with pytest.raises(ValueError, match="data.pool_size"):
        TrainConfig.from_dict(data)


def test_lr_multipliers_make_parameter_groups(tiny_model, tmp_path):
    from mtu.training.run import build_run, make_accelerator

    data = config_dict(
        tiny_model,
        tmp_path / "run",
        tasks=("t2i", "edit"),
        train={"learning_rate": 1e-3, "lr_multipliers": {"conv_in|router": 10.0}},
    )
    config = TrainConfig.from_dict(data)
    run = build_run(config, make_accelerator(config))
    groups = {group["lr"]: group["params"] for group in run.optimizer.param_groups}
    assert sorted(groups) == [1e-3, 1e-2]
    names = {id(p): n for n, p in run.unwrapped.named_parameters()}
    assert all("conv_in" in names[id(p)] or "router" in names[id(p)] for p in groups[1e-2])
    assert not any("conv_in" in names[id(p)] or "router" in names[id(p)] for p in groups[1e-3])
    with pytest.raises(ValueError, match="lr_multipliers"):
        TrainConfig.from_dict(config_dict(tiny_model, tmp_path / "bad", train={"lr_multipliers": {"x": -1}}))
    # issue 31: a bad pattern is named as the config loads; one matching nothing is refused before any step
    with pytest.raises(ValueError, match=r"train.lr_multipliers: key 'router\(' is not a regular expression \(missing"):
        TrainConfig.from_dict(config_dict(tiny_model, tmp_path / "bad", train={"lr_multipliers": {"router(": 2.0}}))
    unmatched = TrainConfig.from_dict(
        config_dict(tiny_model, tmp_path / "typo", train={"lr_multipliers": {"router": 2.0, "ruoter": 3.0}})
    )
    with pytest.raises(ValueError, match=r"\['ruoter'\] match no trainable parameter .* names such as \["):
        build_run(unmatched, make_accelerator(unmatched))


def test_a_task_can_train_without_its_prompt():
    import numpy as np

    from mtu.training.config import TaskConfig
    from mtu.training.sources import open_source

    silent = open_source("sr", TaskConfig(prompt=False), 16)
    talking = open_source("sr", TaskConfig(), 16)
    assert silent.draw(np.random.default_rng(0)).text == ""
    assert talking.draw(np.random.default_rng(0)).text != ""
