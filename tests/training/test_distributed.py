"""Two CPU processes (gloo) give the same weights as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from mtu.training import TrainConfig, train
from tests.training.conftest import config_dict, write_config

ROOT = Path(__file__).resolve().parents[2]


# ~15-20 s on two shared cores (a launcher and two workers import torch): below the 20 s "slow" mark.
def test_two_processes_match_one_process(tiny_model, tmp_path):
    # batch 2 per process x 2 processes == batch 4 in one process; mixed tasks so that some task layers
    # see gradients on one rank only (DDP must average them with the other rank's zeros).
    tasks = ("t2i", "edit", "inpaint")
    distributed = config_dict(tiny_model, tmp_path / "two", tasks=tasks, data={"batch_size": 2}, train={"max_steps": 3})
    path = write_config(tmp_path / "two.yaml", distributed)
    # `--cpu --num_processes 2` starts a single process in accelerate 1.x unless MPI is configured;
    # the torchrun launcher (`--multi_gpu`) starts two, which run on gloo without CUDA.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "mtu",
        "train",
        str(path),
        "--threads",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"step": 3') == 1  # one summary: the main process prints it
    one_process = {**distributed, "output_dir": str(tmp_path / "one"), "data": {**distributed["data"], "batch_size": 4}}
    single = train(TrainConfig.from_dict(one_process))
    two = load_file(tmp_path / "two" / "model" / "mtu_model.safetensors")
    one = load_file(Path(single["model"]) / "mtu_model.safetensors")
    checkpoint = tmp_path / "two" / "checkpoints" / "step-00000002"
    start = load_file(checkpoint / "model" / "mtu_model.safetensors")
    # Each process wrote its own RNG states into the shared checkpoint (nothing pickled).
    rng_files = {f"process-{i}.{ext}" for i in (0, 1) for ext in ("json", "safetensors")}
    assert {p.name for p in (checkpoint / "rng").iterdir()} == rng_files
    assert any(not torch.equal(two[k], start[k]) for k in two)  # training moved the weights
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
