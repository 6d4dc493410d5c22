"""A task added to a trained model: `mtu add-task`, and `mtu train` method add-task (only the new task trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

import mtu
from mtu.cli.main import main
from mtu.config import MTUConfig
from mtu.model import WEIGHTS_NAME
from mtu.pipelines import MTUPipeline
from mtu.training import TrainConfig, dry_run, train
from tests.helpers import perturb
from tests.training.conftest import config_dict
from tests.training.test_training import _eval, assert_same_weights

OLD = ["t2i", "edit"]


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory) -> Path:
    """An MTU folder on the tiny SD pipeline serving t2i and edit, every weight moved as training would."""
    folder = tmp_path_factory.mktemp("trained") / "mtu"
    config = MTUConfig(tasks=OLD, num_experts=2, base_model_name_or_path=str(tiny_model))
    model = mtu.upcycle(UNet2DConditionModel.from_pretrained(tiny_model / "unet"), config)
    perturb(model, seed=1)
    model.save_pretrained(folder)
    return folder


def add_task_config(tiny_model, trained, output_dir, **sections) -> dict:
    sections.setdefault("train", {"max_steps": 2, "weight_decay": 0.1})
    return config_dict(tiny_model, output_dir, tasks=("colorize",), method="add-task", extends=str(trained), **sections)


def assert_old_weights_kept(old_folder: Path, new_folder: Path) -> set[str]:
    """Every weight of `old_folder` is in `new_folder`, bit for bit; returns the keys only the new one has."""
    old, new = load_file(old_folder / WEIGHTS_NAME), load_file(new_folder / WEIGHTS_NAME)
    changed = [key for key, value in old.items() if not torch.equal(new[key], value)]
    assert not changed, changed[:3]
    return set(new) - set(old)


def test_cli_add_task_writes_an_extended_folder(trained, tmp_path, capsys):
    out = tmp_path / "extended"
    argv = ["add-task", "--model", str(trained), "--task", "colorize", "--out", str(out)]
    assert main(argv) == 0
    added = assert_old_weights_kept(trained, out)
    assert added and all("colorize" in key for key in added)
    assert MTUConfig.load(out).task_names == [*OLD, "colorize"]
    capsys.readouterr()
    assert main(argv) == 1 and "already exists and is not empty; --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert main(["info", str(out)]) == 0
    assert "task colorize   conditioning image" in capsys.readouterr().out
    assert main(["add-task", "--model", str(out), "--task", "depth2img:image", "--out", str(tmp_path / "own")]) == 0
    assert MTUConfig.load(tmp_path / "own").tasks[-1] == mtu.TaskSpec("depth2img", "image")
    capsys.readouterr()
    assert main(["add-task", "--model", str(out), "--task", "depth2img", "--out", str(tmp_path / "never")]) == 1
    assert "give yours its conditioning, e.g. --task depth2img:image" in capsys.readouterr().err
    assert main(["add-task", "--model", str(out), "--task", "edit", "--out", str(tmp_path / "never")]) == 1
    assert "already serves 'edit'" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_add_task_run_keeps_old_tasks_and_loads_everywhere(tiny_model, trained, tmp_path, capsys):
    summary = train(TrainConfig.from_dict(add_task_config(tiny_model, trained, tmp_path / "run")))
    folder = Path(summary["model"])
    assert summary["step"] == 2 and json.loads((folder / "training_method.json").read_text())["method"] == "add-task"
    added = assert_old_weights_kept(trained, folder)
    saved = load_file(folder / WEIGHTS_NAME)
    assert saved["conv_in.convs.colorize.weight"][:, 4:].abs().sum() > 0  # zero at init: it trained
    assert added == {key for key in saved if "colorize" in key}
    extended = MTUPipeline.from_pretrained(folder).unet
    original = mtu.load(UNet2DConditionModel.from_pretrained(tiny_model / "unet"), trained)
    generator = torch.Generator().manual_seed(0)
    latent, text = torch.randn(2, 8, 8, 8, generator=generator), torch.randn(2, 5, 16, generator=generator)
    with torch.no_grad():
        for task in OLD:
            sample = latent[:, : original.task_in_channels(task)]
            t = torch.tensor([10, 900])
            assert torch.equal(extended(sample, t, text, task=task).sample, original(sample, t, text, task=task).sample)
    metrics = _eval(capsys, folder, "colorize")
    assert metrics["task"] == "colorize" and metrics["psnr"] > 0
    assert main(["info", str(folder)]) == 0
    assert "method add-task" in capsys.readouterr().out


def test_add_task_run_resumes_exactly(tiny_model, trained, tmp_path):
    straight = train(TrainConfig.from_dict(add_task_config(tiny_model, trained, tmp_path / "straight")))
    halves = add_task_config(tiny_model, trained, tmp_path / "halves")
    assert train(TrainConfig.from_dict(halves), stop_after=1)["stopped"]
    resumed = train(TrainConfig.from_dict(halves), resume="latest")
    assert_same_weights(Path(straight["model"]), Path(resumed["model"]))
    shutil.copytree(trained, tmp_path / "copy")  # the same weights elsewhere: still another model to extend
    with pytest.raises(ValueError, match=r"\['extends'\] differ"):
        train(TrainConfig.from_dict({**halves, "extends": str(tmp_path / "copy")}), resume="latest")


def test_add_task_config_problems(tiny_model, trained, tmp_path):
    def problems(**changes) -> str:
        data = {**add_task_config(tiny_model, trained, tmp_path / "run"), **changes}
        return " ".join(TrainConfig.parse(data)[1])

    assert problems() == ""
    assert "extends: method add-task needs the MTU folder" in problems(extends=None)
    assert "extends: only for method add-task" in problems(method="mtu")
    assert "holds neither mtu_config.json" in problems(extends=str(tmp_path))
    assert "is a base pipeline; add-task extends MTU models" in problems(extends=str(tiny_model))
    assert "['edit'] already served by" in problems(tasks={"edit": {"source": {"type": "shapes"}}})
    assert "was upcycled from" in problems(model="shapes-base")
    lora = tmp_path / "lora"
    shutil.copytree(trained, lora)
    (lora / "training_method.json").write_text(json.dumps({"method": "lora", "adapter": None}))
    assert "is a lora run, which has no experts" in problems(extends=str(lora))


def test_dry_run_counts_only_the_new_task(tiny_model, trained, tmp_path):
    text = dry_run(TrainConfig.from_dict(add_task_config(tiny_model, trained, tmp_path / "run")))
    model = mtu.load(UNet2DConditionModel.from_pretrained(tiny_model / "unet"), trained)
    model.add_task("colorize")
    expected = sum(p.numel() for p in model.task_parameters("colorize"))
    assert f"add-task trains {expected:,} parameters" in text and "serving ['t2i', 'edit']" in text


def test_shipped_add_task_config_is_valid_up_to_the_model_it_extends():
    from tests.training.test_config import CONFIGS

    config, problems = TrainConfig.parse(yaml.safe_load((CONFIGS / "shapes-add-colorize.yaml").read_text()))
    assert config.method == "add-task" and config.task_names == ["colorize"]
    assert all(p.startswith("extends:") for p in problems), problems  # runs/shapes-mtu/model: trained first
