"""Library hardening (issue 13): shared limits, image reading, MTU folder loading, output writing, lazy import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import save_file

import mtu
from mtu.assets import resolve_model_path
from mtu.config import CONFIG_NAME, MTUConfig
from mtu.model import WEIGHTS_NAME
from mtu.pipelines import MTUPipeline, MTURequest
from mtu.utils.images import open_image, to_rgb
from mtu.utils.limits import check_count, check_image_size, check_side, check_steps, check_text, max_side
from mtu.utils.outputs import check_target, replace_folder, write_folder, write_text_atomic
from tests.core.tiny_models import tiny_sd_unet
from tests.helpers import tiny_sd_components


@pytest.fixture(scope="module")
def saved_mtu(tmp_path_factory):
    """An MTU folder of the tiny SD UNet (2 experts, t2i + edit)."""
    folder = tmp_path_factory.mktemp("mtu") / "model"
    mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i", "edit"], num_experts=2)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    components = tiny_sd_components(tmp_path_factory.mktemp("sd"))
    components["unet"] = mtu.upcycle(components["unet"], MTUConfig(tasks=["t2i", "edit", "sr"], num_experts=2))
    pipe = MTUPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- mtu.utils.limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5, True])
def test_steps_out_of_range_are_refused(steps):
    with pytest.raises(ValueError, match="must be a whole number from 1 to 1000"):
        check_steps(steps)


def test_counts_and_sides_are_bounded(monkeypatch):
    assert check_count("--num-images", 3, 64) == 3 and check_steps(1000) == 1000
    with pytest.raises(ValueError, match=r"--resolution must be a whole number >= 1, got 0"):
        check_side("--resolution", 0)
    with pytest.raises(
        ValueError, match=r"refused: --resolution 100000 is over the limit of 1024 .*MTU_MAX_SIDE=100000"
    ):
        check_side("--resolution", 100000)
    monkeypatch.setenv("MTU_MAX_SIDE", "200000")
    assert max_side() == 200000 and check_side("--resolution", 100000) == 100000
    monkeypatch.setenv("MTU_MAX_SIDE", "big")
    with pytest.raises(ValueError, match="MTU_MAX_SIDE='big' must be a whole number"):
        max_side()


def test_image_sizes_and_text():
    check_image_size(1024, 16)
    with pytest.raises(ValueError, match=r"refused: output of 2048 x 2048 pixels is over the limit of 1024"):
        check_image_size(2048, 2048, "output")
    with pytest.raises(ValueError, match="is empty"):
        check_image_size(0, 16)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        check_text("caf\udcff")


# --- mtu.utils.images -----------------------------------------------------------------------------------------


def test_open_image_refuses_large_and_bomb_images_before_decoding(tmp_path):
    PIL.Image.new("L", (2000, 10)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"refused: image .*wide.png of 2000 x 10 pixels .*MTU_MAX_SIDE=2000"):
        open_image(tmp_path / "wide.png")
    PIL.Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 M pixels: PIL's own bomb error
    with pytest.raises(ValueError, match=r"refused: image .*bomb.png of 400,000,000 pixels is over the limit"):
        open_image(tmp_path / "bomb.png")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
    with pytest.raises(ValueError, match="cannot (read|decode) image"):
        open_image(tmp_path / "garbage.png")


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    values = np.full((4, 4), 32768, dtype=np.uint16)  # mid-grey at 16 bits
    PIL.Image.fromarray(values).save(tmp_path / "grey16.png")
    pixels = np.asarray(open_image(tmp_path / "grey16.png"))
    assert pixels.shape == (4, 4, 3) and abs(int(pixels.mean()) - 128) <= 1
    from mtu.serve import to_rgb as served

    assert served is to_rgb  # the server and the command line share one conversion


# --- MTU folders: config and weights ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ({"tasks": None}, "tasks must be a list"),
        ([1], "got a list"),
        ({"tasks": ["t2i"], "target_modules": 5}, "target_modules must be a list"),
        ({"num_experts": 4}, "no 'tasks': an MTU config lists the tasks"),
        ("{not json", "mtu_config.json: "),
    ],
)
def test_bad_config_files_are_one_value_error(tmp_path, content, message):
    (tmp_path / CONFIG_NAME).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=message):
        MTUConfig.load(tmp_path)


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "image.png").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_model_path(tmp_path / "image.png")


def _copy_with_weights(saved_mtu, folder, change):
    folder.mkdir()
    (folder / CONFIG_NAME).write_text((saved_mtu / CONFIG_NAME).read_text())
    from safetensors.torch import load_file

    tensors = load_file(saved_mtu / WEIGHTS_NAME)
    change(tensors)
    save_file(tensors, folder / WEIGHTS_NAME)
    return folder


def test_damaged_nan_and_integer_weights_are_refused_naming_the_file(saved_mtu, tmp_path):
    key = "task_embeddings.t2i"
    nan = _copy_with_weights(saved_mtu, tmp_path / "nan", lambda t: t[key].fill_(float("nan")))
    with pytest.raises(ValueError, match=rf"nan/{WEIGHTS_NAME}: {key} holds NaN"):
        mtu.load(tiny_sd_unet(), nan)
    ints = _copy_with_weights(saved_mtu, tmp_path / "int", lambda t: t.update({key: t[key].long()}))
    with pytest.raises(ValueError, match=rf"{key} is torch.int64, not a floating-point tensor"):
        mtu.load(tiny_sd_unet(), ints)
    for name, data in (("garbage", b"garbage" * 10), ("truncated", (saved_mtu / WEIGHTS_NAME).read_bytes()[:500])):
        folder = _copy_with_weights(saved_mtu, tmp_path / name, lambda t: None)
        (folder / WEIGHTS_NAME).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}/{WEIGHTS_NAME} is damaged or not a safetensors file"):
            mtu.load(tiny_sd_unet(), folder)
    assert mtu.load(tiny_sd_unet(), saved_mtu).task_names == ["t2i", "edit"]  # the good folder still loads


# --- writing: targets and file modes ---------------------------------------------------------------------


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_saved_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)  # not the usual 022, so a hard-coded mode cannot pass
    try:
        mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i"], num_experts=2)).save_pretrained(tmp_path / "model")
        assert _mode(tmp_path / "model" / WEIGHTS_NAME) == 0o640 and _mode(tmp_path / "model" / CONFIG_NAME) == 0o640
        write_text_atomic(tmp_path / "note.txt", "x")
        assert _mode(tmp_path / "note.txt") == 0o640
        out = write_folder(tmp_path / "made", lambda folder: (folder / "a.txt").write_text("a"))
        assert _mode(out) == 0o750 and _mode(out / "a.txt") == 0o640
    finally:
        os.umask(old)


def test_targets_are_refused_unless_overwrite_and_only_model_folders_are_replaced(saved_mtu, tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_target(tmp_path / "empty") == tmp_path / "empty"
    with pytest.raises(FileExistsError, match="already exists and is not empty; --overwrite"):
        check_target(saved_mtu)
    assert check_target(saved_mtu, overwrite=True) == saved_mtu
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a model folder"):
        check_target(tmp_path / "notes", overwrite=True)
    model = tmp_path / "model"
    write_folder(model, lambda folder: (folder / CONFIG_NAME).write_text("{}"))
    write_folder(model, lambda folder: (folder / "model_index.json").write_text("{}"), overwrite=True)
    assert sorted(p.name for p in model.iterdir()) == ["model_index.json"]  # replaced whole: no stale file
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_replacing_through_a_symlink_leaves_nothing_behind(tmp_path):  # issue 31
    real = tmp_path / "real"
    write_folder(real, lambda folder: (folder / CONFIG_NAME).write_text("old"))
    (tmp_path / "link").symlink_to(real)
    write_folder(tmp_path / "link", lambda folder: (folder / CONFIG_NAME).write_text("new"), overwrite=True)
    assert (tmp_path / "link").is_symlink() and (real / CONFIG_NAME).read_text() == "new"  # the link kept
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "link2").symlink_to(other)
    new = tmp_path / "new"
    new.mkdir()
    replace_folder(new, tmp_path / "link2")  # a symlink out is moved aside and unlinked, its target untouched
    assert not (tmp_path / "link2").is_symlink() and (tmp_path / "link2").is_dir() and other.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "link2", "other", "real"]  # no .replaced-*


# --- the pipeline's checks ---------------------------------------------------------------------------------


def test_pipeline_refuses_bad_steps_and_oversized_work_before_running(pipe):
    with pytest.raises(ValueError, match="num_inference_steps must be a whole number from 1 to 1000, got 0"):
        pipe("t2i", "a", num_inference_steps=0)
    with pytest.raises(ValueError, match="got -3"):
        pipe("t2i", "a", num_inference_steps=-3)
    small = PIL.Image.new("RGB", (512, 512))
    with pytest.raises(ValueError, match=r"refused: sr output \(4 x the 512 x 512 input\) of 2048 x 2048 pixels"):
        pipe.check_inputs(MTURequest("sr", image=small))
    with pytest.raises(ValueError, match=r"refused: input image of 1032 x 16 pixels"):
        pipe.check_inputs(MTURequest("edit", image=PIL.Image.new("RGB", (1032, 16))))
    with pytest.raises(ValueError, match=r"refused: output of 2048 x 16 pixels"):
        pipe.check_inputs(MTURequest("t2i", height=16, width=2048))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        pipe.check_inputs(MTURequest("t2i", "caf\udcff"))
    assert pipe.check_inputs(MTURequest("sr", image=PIL.Image.new("RGB", (8, 8)))).height == 32


def test_long_prompts_warn_how_many_tokens_are_dropped(pipe, caplog):
    words = "red circle blue square"  # 19 letters + start + end: the tiny tokenizer has a token per letter, reads 16
    with caplog.at_level("WARNING", logger="mtu.pipelines.inputs"):
        pipe.encode_prompt([words, "red"], torch.device("cpu"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["prompt 0 is 21 tokens, the text encoder reads 16: the last 5 tokens are dropped ('quare')"]


# --- import time -----------------------------------------------------------------------------------------


def test_import_mtu_is_lazy_and_keeps_the_api():
    code = (
        "import sys, mtu; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
        "from mtu.upcycling import add_task_layers; "
        "assert callable(mtu.upcycle) and mtu.upcycle.__module__ == 'mtu.upcycling'; "
        "from mtu import MTUModel, load; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr
