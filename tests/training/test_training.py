"""The training loop: resume is exact, signals checkpoint, NaN stops cleanly, bad samples are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtu.cli.main import main
from mtu.sampler import load_sampler
from mtu.training import TrainConfig, train
from mtu.training.checkpoint import list_checkpoints
from tests.helpers import save_tiny_sdxl_pipeline, write_gqa_inpaint_jsonl
from tests.training.conftest import config_dict, write_config

ROOT = Path(__file__).resolve().parents[2]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(folder / "mtu_model.safetensors")
    adapters = folder / "adapters.safetensors"
    return {**tensors, **(load_file(adapters) if adapters.is_file() else {})}


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.parametrize(
    "method, extra",
    [
        (
            "mtu",
            {
                "train": {
                    "gradient_accumulation_steps": 2,
                    "ema_decay": 0.9,
                    "lr_scheduler": "cosine",
                    "lr_warmup_steps": 1,
                }
            },
        ),
        ("lora", {}),
    ],
)
def test_resume_gives_the_same_weights_as_one_run(tiny_model, tmp_path, method, extra):
    straight = train(TrainConfig.from_dict(config_dict(tiny_model, tmp_path / "straight", method=method, **extra)))
    assert straight["step"] == 4 and not straight["stopped"]
    halves = config_dict(tiny_model, tmp_path / "halves", method=method, **extra)
    first = train(TrainConfig.from_dict(halves), stop_after=2)  # the cosine schedule still spans 4 steps
    assert first["step"] == 2 and first["stopped"]
    resumed = train(TrainConfig.from_dict(halves), resume="latest")
    assert resumed["step"] == 4
    assert_same_weights(Path(straight["model"]), Path(resumed["model"]))
    assert_same_weights(Path(straight["checkpoint"]) / "model", Path(resumed["checkpoint"]) / "model")
    assert [p.name for p in list_checkpoints(tmp_path / "halves")] == ["step-00000002", "step-00000004"]
    assert not [p for p in (tmp_path / "halves" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_resume_rules(tiny_model, tmp_path):
    data = config_dict(tiny_model, tmp_path / "run", train={"max_steps": 1}, checkpoint={"every": 1})
    fresh = train(TrainConfig.from_dict(data), resume="latest")  # nothing to resume yet: starts anew
    assert fresh["step"] == 1
    with pytest.raises(ValueError, match="already has checkpoints .* --resume latest"):
        train(TrainConfig.from_dict(data))
    with pytest.raises(ValueError, match=r"\['method', 'adapter'\] differ|\['method'\] differ"):
        train(TrainConfig.from_dict({**data, "method": "ia3"}), resume="latest")
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        train(TrainConfig.from_dict(data), resume=str(tmp_path / "nowhere"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_model, tmp_path, monkeypatch):
    import mtu.training.step as step

    real = step.train_batch

    def poisoned(run, batch):
        losses, tasks = real(run, batch)
        return (losses * float("nan") if batch["step"] == 2 else losses), tasks

    monkeypatch.setattr(step, "train_batch", poisoned)
    with pytest.raises(RuntimeError) as caught:
        train(TrainConfig.from_dict(config_dict(tiny_model, tmp_path / "run")))
    message = str(caught.value)
    assert "stopped at step 3: loss is nan" in message and "step-00000002 (step 2)" in message
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002"]
    assert not (tmp_path / "run" / "model").exists()


def test_corrupt_samples_are_skipped_and_logged(tiny_model, tmp_path):
    path = write_gqa_inpaint_jsonl(tmp_path / "gqa", count=4)
    (tmp_path / "gqa" / "source" / "0.png").write_bytes(b"\x89PNG broken")
    data = config_dict(tiny_model, tmp_path / "run", tasks=("remove",), train={"max_steps": 2})
    data["tasks"]["remove"] = {"source": {"type": "jsonl", "path": str(path)}}
    summary = train(TrainConfig.from_dict(data))
    assert summary["step"] == 2 and summary["skipped_samples"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["skipped_samples"] == summary["skipped_samples"] and log[-1]["step"] == 2


def test_cli_trains_writes_samples_and_logs(tiny_model, tmp_path, capsys):
    data = config_dict(
        tiny_model,
        tmp_path / "cfg-out",
        tasks=("t2i", "edit", "inpaint"),
        logging={"log_with": "tensorboard", "sample_every": 2, "sample_count": 2, "sample_steps": 2},
    )
    data["tasks"]["inpaint"]["prompt"] = False  # trained without captions: stored so, for the chat
    path = write_config(tmp_path / "c.yaml", data)
    argv = ["train", str(path), "--max-steps", "2", "--output-dir", str(tmp_path / "run"), "--checkpoint-every", "1"]
    argv += ["--seed", "3"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / "run"
    assert summary["step"] == 2 and summary["model"] == str(run / "model")
    grids = sorted(p.name for p in (run / "samples" / "step-00000002").iterdir())
    assert grids == ["edit.png", "inpaint.png", "t2i.png"]
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert (run / "model" / "mtu_config.json").is_file() and (run / "model" / "train_config.yaml").is_file()
    stored = load_sampler(run / "model")
    assert stored["edit"].num_inference_steps == 2  # its samples' sampler (issue 28)
    assert stored["inpaint"].empty_prompt and not stored["edit"].empty_prompt
    assert "seed: 3" in (run / "train_config.yaml").read_text()


def _subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(tiny_model, tmp_path):
    data = config_dict(
        tiny_model, tmp_path / "run", tasks=("t2i", "edit"), train={"max_steps": 100000}, checkpoint={"every": 100000}
    )
    path = write_config(tmp_path / "c.yaml", data)
    command = [sys.executable, "-m", "mtu", "train", str(path), "--threads", "1"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    process = subprocess.Popen(command, cwd=ROOT, env=_subprocess_env(), **pipes)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.time() + 240  # a loaded CI box may take a while to import torch
    while not log.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    stopped_at = summary["step"]
    assert summary["stopped"] and 1 <= stopped_at < 100000 and "received signal 15" in err
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == [f"step-{stopped_at:08d}"]
    longer = {
        **data,
        "train": {**data["train"], "max_steps": stopped_at + 2},
    }  # constant LR: the length does not matter
    resumed = train(TrainConfig.from_dict(longer), resume="latest")
    reference = {**longer, "output_dir": str(tmp_path / "reference")}
    straight = train(TrainConfig.from_dict(reference))
    assert resumed["step"] == straight["step"] == stopped_at + 2
    assert_same_weights(Path(straight["model"]), Path(resumed["model"]))


def test_sdxl_layout_trains_and_samples(tmp_path):
    model = save_tiny_sdxl_pipeline(tmp_path)
    data = config_dict(
        model,
        tmp_path / "run",
        tasks=("t2i", "sr"),
        train={"max_steps": 1},
        logging={"sample_every": 1, "sample_count": 1, "sample_steps": 1, "guidance_scale": 2.0},
    )
    summary = train(TrainConfig.from_dict(data))
    assert summary["step"] == 1 and (tmp_path / "run" / "samples" / "step-00000001" / "sr.png").is_file()


def _eval(capsys, model, task: str, *flags: str) -> dict:
    argv = [
        "eval",
        "--benchmark",
        "shapes",
        "--model",
        str(model),
        "--task",
        task,
        "--num-samples",
        "2",
        "--steps",
        "1",
        "--guidance",
        "1",
        "--json",
        *flags,
    ]
    capsys.readouterr()  # drop what ran before
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", ["lora", "mtu"])
def test_mtu_eval_scores_a_trained_run_of_any_method(tiny_model, tmp_path, capsys, method):
    config = TrainConfig.from_dict(
        config_dict(tiny_model, tmp_path / "run", method=method, tasks=("t2i", "remove"), train={"max_steps": 1})
    )
    model = train(config)["model"]
    t2i, remove = _eval(capsys, model, "t2i"), _eval(capsys, model, "remove")
    assert t2i["num_samples"] == 2 and 0 <= t2i["color"] <= 1
    assert remove["task"] == "remove" and remove["psnr"] > 0 and remove["sampler"]["num_inference_steps"] == 1


def test_image_tasks_can_be_scored_without_their_prompt(tiny_model, tmp_path, capsys):
    folder = tmp_path / "upcycled"
    assert main(["upcycle", "--base", str(tiny_model), "--tasks", "t2i,sr", "--out", str(folder)]) == 0
    with_prompt, without = _eval(capsys, folder, "sr"), _eval(capsys, folder, "sr", "--no-prompt")
    assert with_prompt["prompt"] and not without["prompt"]
    assert without["psnr"] != with_prompt["psnr"]  # the prompt reached the text encoder in one and not the other
    assert main(["eval", "--model", str(folder), "--task", "t2i", "--no-prompt", "--num-samples", "1"]) != 0
    assert "t2i cannot be scored without its prompt" in capsys.readouterr().err
