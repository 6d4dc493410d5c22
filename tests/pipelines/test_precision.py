"""Device and precision: `torch_dtype=` / `pipe.to(...)`, and `--device` / `--dtype` on the commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtu.cli.main import main
from mtu.pipelines import MTUPipeline
from tests.helpers import TASKS, request_for, upcycle_tiny_sd_pipeline

# bfloat16 keeps 8 bits of mantissa: on the tiny test model its images stay within this of float32's (measured
# 51-55 dB over the five tasks at 3 steps; shapes-mtu at its stored 25 DDIM steps: 42-61 dB, median 55,
# over 8 held-out Shapes examples of each task).
MIN_PSNR_DB = 35.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("precision"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def test_bfloat16_on_cpu_gives_the_float32_images_within_the_stated_psnr(folder):
    full = MTUPipeline.from_pretrained(folder)
    half = MTUPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in half.unet.parameters()} == {torch.bfloat16}  # MTU's routers and task layers too
    assert half.vae.dtype == half.text_encoder.dtype == torch.bfloat16
    for pipe in (full, half):
        pipe.set_progress_bar_config(disable=True)
    for task in TASKS:
        expected, got = (p.run_batch([request_for(task)], 3, output_type="np")[0] for p in (full, half))
        assert got.dtype == np.float32 and psnr(got, expected) >= MIN_PSNR_DB, (task, psnr(got, expected))


def test_dtype_is_taken_under_either_name_and_pipe_to_moves_it(folder):
    pipe = MTUPipeline.from_pretrained(folder, dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16
    assert pipe.to(torch.float32).unet.dtype == torch.float32  # diffusers' `to`, inherited
    with pytest.raises(ValueError, match="pass torch_dtype= or dtype=, not both"):
        MTUPipeline.from_pretrained(folder, dtype=torch.bfloat16, torch_dtype=torch.bfloat16)


def test_generate_takes_device_and_dtype(folder, tmp_path):
    argv = ["generate", "--model", str(folder), "--task", "t2i", "--prompt", "a red circle", "--steps", "2"]
    assert main([*argv, "--device", "cpu", "--dtype", "bfloat16", "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["t2i-0-0.png"]


def test_a_precision_without_a_kernel_is_refused_in_one_line_before_loading(folder, tmp_path, monkeypatch, capsys):
    import torch.nn.functional as F

    def no_half_kernel(x, *args, **kwargs):
        if x.dtype == torch.float16:
            raise RuntimeError("\"GroupNormKernelImpl\" not implemented for 'Half'")
        return original(x, *args, **kwargs)

    original = F.group_norm
    monkeypatch.setattr(F, "group_norm", no_half_kernel)
    monkeypatch.setattr(MTUPipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded the model"))
    argv = ["generate", "--model", str(folder), "--task", "t2i", "--out", str(tmp_path), "--device", "cpu"]
    capsys.readouterr()
    assert main([*argv, "--dtype", "float16"]) == 1
    error = capsys.readouterr().err.strip()
    assert "--dtype float16 on cpu: PyTorch" in error and "no group_norm kernel" in error
    assert "use --dtype float32 or bfloat16" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--task", "t2i", "--runtime", "onnx", "--dtype", "float16"], "--dtype: not for --runtime onnx"),
        (["export", "--task", "t2i", "--format", "onnx", "--device", "cpu"], "--device: not for --format onnx"),
        (["serve", "--dtype", "float64"], "invalid choice: 'float64'"),
    ],
)
def test_device_and_dtype_that_do_not_apply_are_refused(folder, tmp_path, argv, message, capsys):
    argv = [*argv, "--model", str(folder)] + (["--out", str(tmp_path / "out")] if argv[0] != "serve" else [])
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusal
        code = exit.code
    assert code in (1, 2) and message in capsys.readouterr().err
