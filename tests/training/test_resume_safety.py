"""Resume reads only safetensors / JSON / YAML: planted pickles never run, old pickle checkpoints are refused,
damaged files are named with the checkpoint to fall back to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mtu.cli.main import main
from mtu.training import TrainConfig, train
from mtu.training.checkpoint import PICKLE_SUFFIXES, list_checkpoints
from tests.training.conftest import config_dict, write_config

# What accelerate's save_state wrote, all loaded with torch.load(weights_only=False) by load_state.
ACCELERATE_FILES = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin")


class Payload:
    """Unpickling this runs `exec`: it writes `marker` (what an attacker's file would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def plant(path: Path, marker: Path) -> None:
    torch.save(Payload(marker), path)


def run_config(model, output_dir: Path) -> dict:
    return config_dict(
        model, output_dir, tasks=("t2i", "edit"), train={"max_steps": 3, "ema_decay": 0.9}, checkpoint={"every": 1}
    )


@pytest.fixture(scope="module")
def stopped_run(tiny_model, tmp_path_factory) -> Path:
    """A run stopped at step 2 of 3, with checkpoints at steps 1 and 2 (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    summary = train(TrainConfig.from_dict(run_config(tiny_model, folder)), stop_after=2)
    assert summary["step"] == 2 and summary["stopped"]
    return folder


@pytest.fixture
def run_copy(stopped_run, tmp_path) -> Path:
    return Path(shutil.copytree(stopped_run, tmp_path / "run"))


def test_checkpoints_hold_no_pickle(stopped_run):
    latest = list_checkpoints(stopped_run)[-1]
    names = {str(p.relative_to(latest)) for p in latest.rglob("*") if p.is_file()}
    assert {
        "state.json",
        "state.safetensors",
        "train_config.yaml",
        "rng/process-0.json",
        "rng/process-0.safetensors",
        "model/mtu_model.safetensors",
    } <= names
    assert not [name for name in names if name.endswith(PICKLE_SUFFIXES)]


def test_the_payload_runs_code_when_unpickled(tmp_path):
    # Guards the tests below: the planted file really would run code under torch.load(weights_only=False).
    marker = tmp_path / "ran"
    plant(tmp_path / "payload.pkl", marker)
    torch.load(tmp_path / "payload.pkl", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ACCELERATE_FILES)
def test_planted_pickles_are_never_loaded(tiny_model, run_copy, tmp_path, name):
    marker = tmp_path / "payload-ran"
    plant(list_checkpoints(run_copy)[-1] / name, marker)
    resumed = train(TrainConfig.from_dict(run_config(tiny_model, run_copy)), resume="latest")
    assert resumed["step"] == 3
    assert not marker.exists()


def test_old_pickle_checkpoints_are_refused_in_one_line(tiny_model, run_copy, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    checkpoint = list_checkpoints(run_copy)[-1]
    for name in ("state.json", "state.safetensors", "rng"):  # what an older mtu did not write
        shutil.rmtree(checkpoint / name) if name == "rng" else (checkpoint / name).unlink()
    for name in ACCELERATE_FILES:
        plant(checkpoint / name, marker)
    path = write_config(tmp_path / "c.yaml", run_config(tiny_model, tmp_path / "other"))
    assert main(["train", str(path), "--resume", str(checkpoint)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mtu train: error:")]
    assert len(errors) == 1  # the CLI's one line (stderr also has model-loading progress bars)
    error = errors[0]
    assert f"checkpoint {checkpoint} was written by an older mtu in a format that can run code" in error
    assert "it is not loaded. Start a new run" in error
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    [
        "state.safetensors",
        "state.json",
        "model/mtu_model.safetensors",
        "rng/process-0.safetensors",
        "rng/process-0.json",
        "train_config.yaml",
    ],
)
def test_damaged_files_are_named_with_the_previous_checkpoint(tiny_model, run_copy, name):
    first, latest = list_checkpoints(run_copy)
    damaged = latest / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut short, as by a full disk
    config = TrainConfig.from_dict(run_config(tiny_model, run_copy))
    with pytest.raises(ValueError) as caught:
        train(config, resume="latest")
    message = str(caught.value)
    assert str(damaged) in message and f"--resume {first}" in message and "\n" not in message
    assert train(config, resume=str(first))["step"] == 3  # the suggested checkpoint works
