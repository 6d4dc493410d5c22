"""The `mtu` command line on a tiny base pipeline: upcycle -> info -> generate -> export -> stock load."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline

from mtu.cli.main import main, quiet_known_noise
from tests.helpers import generate_argv, upcycle_tiny_sd_pipeline


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    upcycle_tiny_sd_pipeline(root)
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "image.png")
    PIL.Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(root / "small.png")
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    PIL.Image.fromarray(mask).save(root / "mask.png")
    (root / "not-an-image.png").write_text("hello")
    return root


def test_upcycle_writes_an_mtu_folder(workspace):
    files = sorted(p.name for p in (workspace / "mtu").iterdir())
    assert files == ["mtu_config.json", "mtu_model.safetensors"]
    config = json.loads((workspace / "mtu" / "mtu_config.json").read_text())
    assert config["num_experts"] == 2 and config["base_model_name_or_path"].endswith("pipeline")


def test_info_describes_mtu_and_pipeline_folders(workspace, capsys):
    assert main(["info", str(workspace / "mtu")]) == 0
    out = capsys.readouterr().out
    assert "2 experts per FFN" in out and "task inpaint" in out and "trainable" in out
    assert main(["info", str(workspace / "base" / "pipeline")]) == 0
    assert "StableDiffusionPipeline" in capsys.readouterr().out


@pytest.mark.parametrize(
    "task, extra",
    [
        ("t2i", []),
        ("edit", ["--image", "image.png"]),
        ("sr", ["--image", "small.png"]),
        ("remove", ["--image", "image.png"]),
        ("inpaint", ["--image", "image.png", "--mask", "mask.png"]),
    ],
)
def test_generate_every_task_writes_pngs(workspace, task, extra):
    extra = [str(workspace / item) if item.endswith(".png") else item for item in extra]
    out = workspace / "out" / task
    assert main(generate_argv(workspace / "mtu", task, out, *extra)) == 0
    images = list(out.glob("*.png"))
    assert len(images) == 1 and PIL.Image.open(images[0]).size == (16, 16)


def test_an_interrupt_while_pngs_are_written_leaves_only_whole_ones(workspace, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM, mtu.utils.signals.Terminated) in the middle of the second PNG (issue 30): the first is
    whole and listed, the second neither written nor left half-written, no temp file; one line, exit 130."""
    real_save, calls = PIL.Image.Image.save, []

    def save(image, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\x89PNG\r\n")  # half a file, then the interrupt
            raise KeyboardInterrupt
        return real_save(image, path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image.Image, "save", save)
    out = workspace / "out" / "interrupted"
    assert main([*generate_argv(workspace / "mtu", "t2i", out), "--num-images", "3"]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "mtu generate: interrupted; only the PNGs listed above were written"
    listed = [Path(line) for line in captured.out.split()]
    assert len(listed) == 1 and sorted(out.iterdir()) == listed  # no second PNG, no temp file
    assert PIL.Image.open(listed[0]).size == (16, 16)


@pytest.mark.parametrize(
    "task, stock_class",
    [("edit", StableDiffusionInstructPix2PixPipeline), ("inpaint", StableDiffusionInpaintPipeline)],
)
def test_export_writes_a_stock_pipeline_folder(workspace, task, stock_class):
    out = workspace / f"export-{task}"
    assert main(["export", "--model", str(workspace / "mtu"), "--task", task, "--out", str(out)]) == 0
    stock = DiffusionPipeline.from_pretrained(out)
    assert type(stock) is stock_class
    assert stock.unet.config.in_channels == {"edit": 8, "inpaint": 9}[task]
    assert not [p for p in workspace.iterdir() if p.name.startswith(f".export-{task}")]  # no temp left behind


def test_errors_are_one_line_messages(workspace, capsys):
    argv = [
        "generate",
        "--model",
        str(workspace / "mtu"),
        "--task",
        "edit",
        "--steps",
        "1",
        "--out",
        str(workspace / "x"),
    ]
    assert main(argv) == 1
    assert "mtu generate: error: task 'edit' needs image=..." in capsys.readouterr().err
    assert main([*argv, "--image", str(workspace / "not-an-image.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert main(["info", str(workspace / "missing")]) == 1
    assert "neither a local folder nor a shipped model name" in capsys.readouterr().err
    with pytest.raises(ValueError):
        main(["--debug", *argv])


def test_cli_drops_only_the_torchvision_fallback_warning():
    # The CLI filters one known-harmless transformers warning at its source logger; any other message of that
    # logger must still reach its handlers.
    quiet_known_noise()
    quiet_known_noise()  # idempotent: one filter, however often main runs in a process
    source = logging.getLogger("transformers.utils.import_utils")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    source.addHandler(handler)
    try:
        source.warning("`CLIPImageProcessor` requires torchvision (not installed); falling back to `X` for ...")
        source.warning("some other transformers warning")
    finally:
        source.removeHandler(handler)
    assert seen == ["some other transformers warning"]
    assert sum(type(f).__name__ == "DropTorchvisionFallback" for f in source.filters) == 1
