"""Issue 31: errors come early and in one line naming the problem and its fix (no model is loaded here)."""

from __future__ import annotations

import errno
import json

import pytest

import mtu.cli.info
from mtu.cli.main import describe, main


def last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(mtu.cli.info, "run", interrupted)
    assert main(["info", "shapes-base"]) == 130
    assert last_line(capsys) == "mtu info: interrupted; nothing written"


@pytest.mark.parametrize(
    "code, fix",
    [
        (errno.EACCES, "permission denied; check its permissions, or choose another path"),
        (errno.ENOSPC, "the disk is full: free space or choose another disk"),
        (errno.ENOTDIR, "a part of the path is a file, not a folder"),
    ],
)
def test_os_errors_name_the_path_and_the_fix(code, fix):
    import os

    line = describe(OSError(code, os.strerror(code), "/data/out/model"))
    assert line.startswith("/data/out/model: ") and fix in line and "Errno" not in line


def test_a_port_out_of_range_is_one_line(capsys):
    assert main(["serve", "--port", "99999"]) == 1
    assert last_line(capsys) == "mtu serve: error: --port must be a whole number from 1 to 65535, got 99999"


def test_an_out_under_a_file_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["upcycle", "--base", "shapes-base", "--out", str(tmp_path / "notes.txt" / "mtu")]
    assert main(argv) == 1
    assert f"{tmp_path / 'notes.txt'} is a file, so" in last_line(capsys)


def test_generate_checks_its_settings_and_out_before_loading(tmp_path, capsys):
    from mtu.assets import local_model_path

    (tmp_path / "a.png").write_text("not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    missing = str(tmp_path / "no-such-model")  # loading it would fail: every refusal below comes first
    cases = [
        (["--guidance", "nan"], "--guidance must be a number from 0 to 30, got nan"),
        (["--guidance", "inf"], "--guidance must be a number from 0 to 30, got inf"),
        (["--image-guidance", "-1"], "--image-guidance must be a number from 0 to 30, got -1.0"),
        (["--seed", "-1"], "--seed must be a whole number from 0 to 2**63 - 1, got -1"),
        (["--out", str(tmp_path / "a.png")], f"{tmp_path / 'a.png'} is a file, and the output is a folder"),
        (["--out", str(tmp_path / "dangling")], "which does not exist: fix or remove the link"),
    ]
    for extra, message in cases:
        assert main(["generate", "--model", missing, "--task", "t2i", *extra]) == 1
        assert message in last_line(capsys), extra
    base = local_model_path("shapes-base")
    assert main(["generate", "--model", "shapes-base", "--task", "t2i", "--out", str(base / "unet")]) == 1
    assert f"lies inside {base}, which this command reads" in last_line(capsys)
    assert not list((base / "unet").glob("*.png"))


def test_upcycle_sizes_are_bounded_before_anything_is_allocated(tmp_path, capsys):
    argv = ["upcycle", "--router-hidden-dim", "1000000000", "--out", str(tmp_path / "mtu")]
    assert main(argv) == 1  # 256 GB in one router tensor, asked for on the command line
    assert "router_hidden_dim = 1000000000 is over 65,536: no real model is this large" in last_line(capsys)
    assert not (tmp_path / "mtu").exists()


@pytest.mark.parametrize("index", [{"mtu_onnx": {}}, {"mtu_onnx": {"tasks": [], "task_channels": {}}}])
def test_an_onnx_folder_with_an_empty_index_is_one_line(tmp_path, capsys, index):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model_index.json").write_text(json.dumps(index))
    argv = ["generate", "--runtime", "onnx", "--model", str(tmp_path / "onnx"), "--task", "t2i"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1  # was KeyError: 'tasks'
    assert "manifest lacks the tasks, their channels or the scheduler" in last_line(capsys)
