"""The command line under bad input (issue 13): no silent overwrites, bounded work, one-line errors, fast start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from mtu.cli.main import main
from mtu.model import WEIGHTS_NAME
from tests.helpers import save_tiny_sd_pipeline


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    base = save_tiny_sd_pipeline(root / "base")
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "image.png")
    PIL.Image.new("RGB", (512, 512)).save(root / "512.png")
    PIL.Image.new("L", (1100, 1100)).save(root / "big.png")
    PIL.Image.new("1", (20000, 20000)).save(root / "bomb.png")  # 400 M pixels in a few KB
    PIL.Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16)).save(root / "grey16.png")
    argv = ["upcycle", "--base", str(base), "--experts", "2", "--tasks", "t2i,edit,sr", "--out", str(root / "mtu")]
    assert main(argv) == 0
    return root


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"mtu {command}: error: ") and "Traceback" not in "\n".join(err), err
    return err[-1]


def generate(workspace, *extra: str, model=None) -> list[str]:
    model = model or workspace / "mtu"
    return ["generate", "--model", str(model), "--steps", "1", "--out", str(workspace / "out"), *extra]


# --- 1. no silent overwrites ---------------------------------------------------------------------------


def test_upcycle_refuses_an_existing_model_and_overwrite_replaces_it(workspace, capsys):
    weights = workspace / "mtu" / WEIGHTS_NAME
    before = weights.read_bytes()
    argv = [
        "upcycle",
        "--base",
        str(workspace / "base" / "pipeline"),
        "--experts",
        "2",
        "--out",
        str(workspace / "mtu"),
    ]
    assert main(argv) == 1
    assert "already exists and is not empty; --overwrite" in one_line_error(capsys, "upcycle")
    assert weights.read_bytes() == before
    copy = workspace / "mtu-copy"
    shutil.copytree(workspace / "mtu", copy)
    (copy / "training_method.json").write_text('{"method": "mtu"}')
    old_umask = os.umask(0o022)
    try:
        assert main([*argv[:-1], str(copy), "--overwrite"]) == 0
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in copy.iterdir()) == ["mtu_config.json", WEIGHTS_NAME]  # the old run is gone whole
    assert (copy / WEIGHTS_NAME).stat().st_mode & 0o777 == 0o644 and copy.stat().st_mode & 0o777 == 0o755


def test_export_refuses_an_existing_folder_unless_overwrite(workspace, capsys):
    out = workspace / "export-edit"
    argv = ["export", "--model", str(workspace / "mtu"), "--task", "edit", "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 1
    assert f"{out} already exists and is not empty; --overwrite" in one_line_error(capsys, "export")
    assert main([*argv, "--overwrite"]) == 0 and (out / "model_index.json").is_file()


def test_generate_refuses_to_overwrite_pngs(workspace, capsys):
    argv = generate(workspace, "--task", "t2i", "--seed", "7")
    assert main(argv) == 0
    png = workspace / "out" / "t2i-7-0.png"
    assert main(argv) == 1
    assert f"{png} already exists; --overwrite replaces it" in one_line_error(capsys, "generate")
    assert main([*argv, "--overwrite"]) == 0


# --- 2. bounds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "t2i", "--steps", "0"], "--steps must be a whole number from 1 to 1000, got 0"),
        (["--task", "t2i", "--steps", "-3"], "--steps must be a whole number from 1 to 1000, got -3"),
        (["--task", "t2i", "--num-images", "0"], "--num-images must be a whole number from 1 to 64, got 0"),
        (["--task", "sr", "--image", "512.png"], "refused: sr output (4 x the 512 x 512 input) of 2048 x 2048 pixels"),
        (["--task", "edit", "--image", "big.png"], "of 1100 x 1100 pixels is over the limit of 1024 pixels a side"),
        (["--task", "edit", "--image", "bomb.png"], "of 400,000,000 pixels is over the limit of 1024 x 1024 pixels"),
        (["--task", "t2i", "--prompt", "caf\udcff"], "--prompt 'caf\\udcff' is not valid UTF-8 text"),
    ],
)
def test_generate_refuses_before_loading_the_model(workspace, capsys, extra, message):
    extra = [str(workspace / item) if item.endswith(".png") else item for item in extra]
    argv = ["generate", "--model", str(workspace / "no-such-model"), "--out", str(workspace / "never"), *extra]
    assert main(argv) == 1  # the model folder does not exist: the refusal came first
    assert message in one_line_error(capsys, "generate")
    assert not (workspace / "never").exists()


def test_max_side_can_be_raised(workspace, monkeypatch, capsys):
    monkeypatch.setenv("MTU_MAX_SIDE", "1200")
    argv = [
        "generate",
        "--model",
        str(workspace / "no-such-model"),
        "--task",
        "edit",
        "--image",
        str(workspace / "big.png"),
    ]
    assert main(argv) == 1
    # the image passed; the model is what's missing
    assert "is neither a local folder nor a shipped model name" in one_line_error(capsys, "generate")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--benchmark", "folder", "--resolution", "0"], "--resolution must be a whole number >= 1, got 0"),
        (["--benchmark", "folder", "--resolution", "100000"], "refused: --resolution 100000 is over the limit of 1024"),
        (["--steps", "-1"], "--steps must be a whole number from 1 to 1000, got -1"),
        (["--num-samples", "0"], "--num-samples must be a whole number >= 1, got 0"),
    ],
)
def test_eval_refuses_impossible_numbers(workspace, capsys, extra, message):
    assert main(["eval", "--model", str(workspace / "mtu"), "--data", "x.jsonl", *extra]) == 1
    assert message in one_line_error(capsys, "eval")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_one_line(workspace, capsys):
    assert main(["eval", "--model", str(workspace / "mtu"), "--device", "cuda"]) == 1
    assert "--device cuda: CUDA is not available on this machine" in one_line_error(capsys, "eval")


# --- 3. one-line errors --------------------------------------------------------------------------------


def broken_copy(workspace, name: str, config=None, weights: bytes | None = None):
    folder = workspace / name
    shutil.copytree(workspace / "mtu", folder, dirs_exist_ok=True)
    if config is not None:
        (folder / "mtu_config.json").write_text(json.dumps(config))
    if weights is not None:
        (folder / WEIGHTS_NAME).write_bytes(weights)
    return folder


def test_broken_model_folders_are_one_line_errors(workspace, capsys):
    saved = json.loads((workspace / "mtu" / "mtu_config.json").read_text())
    null_tasks = broken_copy(workspace, "null-tasks", {**saved, "tasks": None})
    assert main(["info", str(null_tasks)]) == 1
    assert "tasks must be a list" in one_line_error(capsys, "info")
    assert main(["info", str(broken_copy(workspace, "list-config", [1]))]) == 1
    assert "an MTU config is a JSON object of settings, got a list" in one_line_error(capsys, "info")
    truncated = (workspace / "mtu" / WEIGHTS_NAME).read_bytes()[:300]
    for name, data in (("garbage", b"garbage" * 10), ("truncated", truncated)):
        assert main(generate(workspace, "--task", "t2i", model=broken_copy(workspace, name, weights=data))) == 1
        assert f"{WEIGHTS_NAME} is damaged or not a safetensors file" in one_line_error(capsys, "generate")
    assert main(["upcycle", "--base", str(workspace / "image.png"), "--out", str(workspace / "never")]) == 1
    assert "is a file; a model is a folder" in one_line_error(capsys, "upcycle")


def test_nan_weights_are_refused(workspace, capsys):
    from safetensors.torch import load_file, save_file

    folder = broken_copy(workspace, "nan")
    tensors = load_file(folder / WEIGHTS_NAME)
    tensors["task_embeddings.t2i"][0] = float("nan")
    save_file(tensors, folder / WEIGHTS_NAME)
    assert main(generate(workspace, "--task", "t2i", model=folder)) == 1
    assert "task_embeddings.t2i holds NaN or infinite values" in one_line_error(capsys, "generate")


def test_unexpected_errors_are_one_line_too(workspace, capsys, monkeypatch):
    import mtu.cli.info

    def broken(args):
        raise KeyError("tasks")

    monkeypatch.setattr(mtu.cli.info, "run", broken)
    assert main(["info", str(workspace / "mtu")]) == 1
    assert "KeyError: 'tasks' (unexpected; --debug shows the traceback)" in one_line_error(capsys, "info")


def test_sixteen_bit_input_reaches_the_pipeline_scaled(workspace, monkeypatch):
    from mtu.pipelines import MTUPipeline

    seen = {}

    class Recorder:
        scheduler = None  # no step limit of its own (mtu.utils.limits.scheduler_max_steps)

        def to(self, device):
            return self

        def sampler_for(self, task, fallback):
            return fallback

        def __call__(self, task, prompt, image=None, **kwargs):
            seen["image"] = image
            return type("Result", (), {"images": [PIL.Image.new("RGB", (16, 16))]})()

    monkeypatch.setattr(MTUPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: Recorder()))
    assert main(generate(workspace, "--task", "edit", "--image", str(workspace / "grey16.png"), "--overwrite")) == 0
    assert abs(int(np.asarray(seen["image"]).mean()) - 128) <= 1  # not clipped to white (255)


def test_info_says_what_a_lora_run_folder_is(workspace, capsys):
    from mtu.baseline_models import AdapterSpec, build_baseline
    from mtu.config import MTUConfig
    from mtu.loading import save_trained
    from tests.core.tiny_models import tiny_sd_unet

    config = MTUConfig.load(workspace / "mtu")
    model = build_baseline(tiny_sd_unet(), "lora", config, AdapterSpec("lora", rank=2))
    save_trained(model, workspace / "lora-run", "lora", AdapterSpec("lora", rank=2))
    assert main(["info", str(workspace / "lora-run")]) == 0
    out = capsys.readouterr().out
    assert "LoRA baseline: one low-rank adapter per task on each FFN, no experts (rank 2)" in out
    assert "experts per FFN" not in out and "trained" in out


# --- 4. start-up -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--no-such-flag"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    code = (
        "import sys\nfrom mtu.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\nprint('heavy:', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert "heavy: []" in result.stdout, result.stdout + result.stderr
