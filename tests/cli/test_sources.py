"""Issue 31: no command writes into a model it reads, and --overwrite replaces only what mtu wrote.

Every refused command leaves the source byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from mtu.cli.main import main
from mtu.model import WEIGHTS_NAME
from mtu.training import load_config
from tests.helpers import upcycle_tiny_sd_pipeline


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    model = upcycle_tiny_sd_pipeline(root)
    (model / "README.md").write_text("the model card\n")
    return root


def digest(folder) -> dict[str, str]:
    """Every file under `folder` by content hash."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def refused(capsys, argv: list[str], *sources) -> str:
    """Run `argv`, which must fail in one line and leave every source folder as it was; the line."""
    before = [digest(source) for source in sources]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert [digest(source) for source in sources] == before
    return err[0]


def export(model, out, *extra) -> list[str]:
    return ["export", "--model", str(model), "--task", "t2i", "--out", str(out), *extra]


@pytest.mark.parametrize(
    "target, extra, relation",
    [
        ("{mtu}", [], "is"),
        ("{mtu}/" + WEIGHTS_NAME, ["--format", "single-file"], "lies inside"),
        ("{mtu}/sub", ["--format", "onnx"], "lies inside"),
        ("{root}", [], "holds"),
        ("{base}", [], "is"),
        ("{base}/unet", [], "lies inside"),
    ],
)
def test_export_never_writes_into_its_model_or_base(root, capsys, target, extra, relation):
    model, base = root / "mtu", root / "base" / "pipeline"
    out = target.format(mtu=model, root=root, base=base)
    line = refused(capsys, export(model, out, *extra, "--overwrite"), model, base)
    assert f"--out {out} {relation} " in line and "mtu never writes into a model it reads" in line


def test_a_symlink_to_the_model_is_the_model(root, capsys):
    link = root / "link-to-mtu"
    link.symlink_to(root / "mtu")
    line = refused(capsys, export(root / "mtu", link, "--overwrite"), root / "mtu")
    assert f"--out {link} is {root / 'mtu'}" in line


def test_add_task_and_upcycle_never_write_into_their_input(root, capsys):
    model, base = root / "mtu", root / "base" / "pipeline"
    argv = ["add-task", "--model", str(model), "--task", "colorize", "--out", str(model), "--overwrite"]
    assert "which this command reads" in refused(capsys, argv, model, base)
    for out in (base, base / "mtu"):
        argv = ["upcycle", "--base", str(base), "--experts", "2", "--out", str(out), "--overwrite"]
        assert "which this command reads" in refused(capsys, argv, base)
    assert not (base / "mtu").exists()


def test_overwrite_replaces_only_what_mtu_wrote(root, capsys):
    model, base = root / "mtu", root / "base" / "pipeline"
    text = root / "notes.safetensors"
    text.write_text("not weights")
    line = refused(capsys, export(model, text, "--format", "single-file", "--overwrite"), model)
    assert "is not a single-file export of mtu" in line and text.read_text() == "not weights"
    other = root / "other-pipeline"  # a diffusers pipeline mtu did not export (a download, say)
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    line = refused(capsys, export(model, other, "--overwrite"), other)
    assert "is not a model folder mtu wrote" in line
    (root / "notes.txt").write_text("mine")
    line = refused(capsys, export(model, root / "notes.txt"), model)
    assert "is a file, and the output is a folder: choose another path" in line and "--overwrite" not in line
    dangling = root / "dangling"
    dangling.symlink_to(root / "nowhere")
    assert "which does not exist: fix or remove the link" in refused(capsys, export(model, dangling), model)
    assert not (root / "nowhere").exists() and base.is_dir()


def test_an_empty_out_is_an_argument_error(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(export(root / "mtu", ""))
    assert exit_info.value.code == 2 and "an empty path would name the current folder" in capsys.readouterr().err


def write_train_config(root, output_dir) -> str:
    data = {
        "model": str(root / "base" / "pipeline"),
        "output_dir": str(output_dir),
        "tasks": {"t2i": {"source": {"type": "shapes"}}},
        "data": {"resolution": 16},
    }
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_train_refuses_an_output_dir_in_a_model(root, capsys):
    model, base = root / "mtu", root / "base" / "pipeline"
    with pytest.raises(ValueError, match="output_dir: .* holds mtu_config.json, so it is a model folder"):
        load_config(write_train_config(root, model))
    config = write_train_config(root, base / "runs")
    line = refused(capsys, ["train", config], model, base)
    assert f"output_dir {base / 'runs'} lies inside {base}" in line
    line = refused(capsys, ["train", config, "--output-dir", str(model)], model, base)
    assert "so it is a model folder, not a run folder" in line


def test_quickstart_and_reproduce_refuse_an_out_in_their_model(root, capsys):
    base = root / "base" / "pipeline"
    config = write_train_config(root, root / "runs")
    argv = ["quickstart", "--config", config, "--out", str(base / "quick"), "--steps", "1"]
    assert "lies inside" in refused(capsys, argv, base)
    assert not (base / "quick").exists()
    argv = ["reproduce", "--config", config, "--out", str(base), "--quick", "--report-only"]
    assert f"--out {base} is {base}" in refused(capsys, argv, base)
