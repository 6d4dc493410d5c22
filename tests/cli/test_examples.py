"""Shipped example inputs: `mtu generate --task T --example` runs every task in one command."""

from __future__ import annotations

import PIL.Image
import pytest

from mtu.cli.main import main
from mtu.examples import EXAMPLES_DIR, example_inputs
from mtu.pipelines import MTUPipeline
from tests.helpers import TASKS, upcycle_tiny_sd_pipeline


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("examples"))


def test_the_shipped_inputs_are_the_sizes_the_tasks_are_trained_on():
    assert PIL.Image.open(EXAMPLES_DIR / "scene.png").size == (64, 64)
    assert PIL.Image.open(example_inputs("sr")["image"]).size == (16, 16)  # x4 to the 64x64 training size
    assert example_inputs("sr")["prompt"] == ""  # sr is trained uncaptioned
    inpaint = example_inputs("inpaint")
    assert PIL.Image.open(inpaint["mask"]).size == PIL.Image.open(inpaint["image"]).size
    assert example_inputs("t2i")["image"] is None and example_inputs("edit")["prompt"] == "make the red circle blue"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_from_its_example_in_one_command(folder, tmp_path, task, monkeypatch):
    prompts = []
    call = MTUPipeline.__call__
    monkeypatch.setattr(
        MTUPipeline, "__call__", lambda self, t, prompt, **k: prompts.append(prompt) or call(self, t, prompt, **k)
    )
    argv = ["generate", "--model", str(folder), "--task", task, "--example", "--steps", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    side = 64 if example_inputs(task)["image"] else 16  # image tasks: the 64x64 scene (sr: 16 x 4); t2i: the model's
    assert [PIL.Image.open(p).size for p in tmp_path.glob("*.png")] == [(side, side)]
    assert prompts == [example_inputs(task)["prompt"]]


def test_example_inputs_give_way_to_the_users_and_unknown_tasks_are_named(folder, tmp_path, capsys):
    argv = ["generate", "--model", str(folder), "--task", "sr", "--example", "--steps", "1", "--out", str(tmp_path)]
    small = tmp_path / "small.png"
    PIL.Image.new("RGB", (8, 8)).save(small)
    assert main([*argv, "--image", str(small)]) == 0
    assert PIL.Image.open(tmp_path / "sr-0-0.png").size == (32, 32)  # the user's 8x8 image, x4
    assert main(["generate", "--model", str(folder), "--task", "depth", "--example", "--out", str(tmp_path)]) == 1
    assert "no shipped example for task 'depth'; examples exist for ['colorize', 'edit'" in capsys.readouterr().err
