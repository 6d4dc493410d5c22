"""Config validation: every problem in one error; overrides; the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtu.cli.main import main
from mtu.training.config import TrainConfig, load_config
from tests.training.conftest import config_dict, write_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_problem_is_reported_in_one_error(tiny_model, tmp_path):
    data = config_dict(tiny_model, tmp_path / "run", method="dora", colour="blue")
    data["tasks"]["edit"] = {"source": {"type": "jsonl", "path": str(tmp_path / "missing.jsonl")}, "wieght": 2}
    data["tasks"]["depth"] = {"source": {"type": "shapes"}}
    data["train"].update(learning_rate=-1, mixed_precision="fp8")
    data["data"].update(text_dropout=0.6, image_dropout=0.6, resolution=20)
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_dict(data)
    message = str(caught.value)
    assert "\n" not in message  # the CLI prints it as one line
    for expected in [
        "config: unknown keys ['colour']",
        "tasks.edit: unknown keys ['wieght']",
        "method: 'dora' is not one of",
        "missing.jsonl",
        "'depth' is not a built-in task",
        "train.learning_rate: must be a number > 0, got -1",
        "train.mixed_precision: 'fp8'",
        "sum to <= 1",
        "data.resolution: must be a positive multiple of 8, got 20",
    ]:
        assert expected in message, expected
    assert message.startswith("invalid training config, 9 problems: (1)")


def test_impossible_combinations(tiny_model, tmp_path):
    data = config_dict(tiny_model, tmp_path / "run", method="single-task")
    data["tasks"]["sr"]["sr_scale"] = 2
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_dict(data)
    assert "single-task trains exactly one task, got 5" in str(caught.value)
    assert "shapes sr pairs are x4; got 2" in str(caught.value)
    data = config_dict(tmp_path / "no-model", tmp_path / "run")
    data["tasks"] = {"edit": {"source": {"type": "folder", "path": str(tmp_path)}}}
    expected = "neither a local folder nor a shipped model.*a folder of images has no conditioning image"
    with pytest.raises(ValueError, match=expected):
        TrainConfig.from_dict(data)


def test_load_config_applies_overrides_and_reports_missing_file(tiny_model, tmp_path):
    path = write_config(tmp_path / "c.yaml", config_dict(tiny_model, tmp_path / "run"))
    config = load_config(path, {"train.max_steps": 7, "output_dir": str(tmp_path / "other"), "seed": None})
    assert config.train.max_steps == 7 and config.output_dir == str(tmp_path / "other") and config.seed == 0
    assert config.task_names == ["t2i", "edit", "sr", "remove", "inpaint"]
    with pytest.raises(FileNotFoundError, match="no training config at"):
        load_config(tmp_path / "nope.yaml")


def test_cli_prints_config_errors_on_one_line(tiny_model, tmp_path, capsys):
    data = config_dict(tiny_model, tmp_path / "run", train={"max_steps": 0, "lr_scheduler": "sawtooth"})
    path = write_config(tmp_path / "bad.yaml", data)
    assert main(["train", str(path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert error.startswith("mtu train: error: invalid training config, 2 problems")


@pytest.mark.parametrize("name", ["shapes.yaml", "sd15.yaml", "sdxl.yaml"])
def test_shipped_configs_are_valid_up_to_their_placeholder_paths(name):
    config, problems = TrainConfig.parse(yaml.safe_load((CONFIGS / name).read_text()))
    # Only what may be absent on this machine may fail: the base model and the local datasets.
    assert all(p.startswith("model:") or ".source.path: no such" in p for p in problems), problems
    assert config.method == "mtu" and config.task_names == ["t2i", "edit", "sr", "remove", "inpaint"]


def test_task_behaviour_comes_from_the_spec_not_the_name():
    from mtu.config import BUILTIN_TASKS
    from mtu.training.config import TaskConfig

    assert TaskConfig().spec("sr") == BUILTIN_TASKS["sr"] and TaskConfig().scale("sr") == 4
    assert TaskConfig().scale("edit") is None and TaskConfig().columns("remove")["text"] == "instruction"
    own = TaskConfig(conditioning="image", sr_scale=2)  # a task of the user's that scales up, as sr does
    assert own.spec("sr2").upscale == 2 and own.scale("sr2") == 2
    assert own.columns("sr2") == TaskConfig().columns("sr") == {"target": "image", "text": "caption"}
    assert TaskConfig(conditioning="image").spec("depth2img").upscale == 1


def test_task_names_have_one_spelling(tiny_model, tmp_path):  # issue 31
    data = config_dict(tiny_model, tmp_path / "run", tasks=("t2i",))
    data["tasks"]["\uff54\uff12\uff49"] = {"source": {"type": "shapes"}}
    data["tasks"]["x" * 33] = {"source": {"type": "shapes"}}
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_dict(data)
    assert "tasks.\uff54\uff12\uff49: write the task name as 't2i'" in str(caught.value)
    assert "of at most 32 characters" in str(caught.value)
