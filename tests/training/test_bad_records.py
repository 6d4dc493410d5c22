"""One bad training record is skipped, counted and named (file and line), never the end of the run.

Each kind below ended `mtu train` with a traceback before (issue 13): a decompression-bomb image, a JSONL
line that is valid JSON but not an object, a non-UTF-8 byte in a JSONL line or in a caption file.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mtu.cli.main import main
from mtu.training import TrainConfig, train
from mtu.training.config import SourceConfig, TaskConfig
from mtu.training.sources import UnreadableSample, open_source
from tests.helpers import write_coco_jsonl, write_image_folder
from tests.training.conftest import config_dict, write_config


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG whose header claims width x height pixels (10 G by default): PIL's bomb check trips."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def bad_jsonl(folder: Path) -> tuple[Path, dict[str, int]]:
    """COCO-style captions with one good record and one of each bad kind; returns the file and kind -> line."""
    path = write_coco_jsonl(folder, count=2)
    good = path.read_bytes().splitlines()[0]
    (folder / "images" / "bomb.png").write_bytes(bomb_png())
    lines = [
        good,
        b"",  # blank lines are counted in the line numbers the warnings give
        b"[1, 2]",
        b'{"image": "images/bomb.png", "caption": "a bomb"}',
        b"",
        b'{"image": "images/0.png", "caption": "caf\xff"}',
        b'{"image": "images/0.png", "caption": "caf\\udcff"}',  # valid JSON, a lone surrogate
        b'{"image": "images/0.png", "caption": [1, 2]}',
        b"{not json",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    kinds = {"not an object": 3, "bomb": 4, "non-UTF-8": 6, "surrogate": 7, "caption not text": 8, "bad JSON": 9}
    return path, kinds


def bad_folder(folder: Path) -> Path:
    """Captioned images: two good, one caption with a non-UTF-8 byte, one bomb."""
    write_image_folder(folder, count=3, size=32)
    (folder / "2.txt").write_bytes(b"a caption \xff\xfe")
    (folder / "3.png").write_bytes(bomb_png())
    return folder


def bad_hf(folder: Path) -> Path:
    """A `save_to_disk` dataset (t2i columns) whose second row holds a bomb image."""
    import datasets

    good = (write_image_folder(folder / "png", count=1) / "0.png").read_bytes()
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    rows = {"image": [{"bytes": good, "path": None}, {"bytes": bomb_png(), "path": None}], "caption": ["a", "b"]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(folder / "hf"))
    return folder / "hf"


def _source(name: str, kind: str, path: Path):
    return open_source(name, TaskConfig(source=SourceConfig(type=kind, path=str(path))), 16)


def test_each_bad_jsonl_line_is_unreadable_and_named_by_its_line(tmp_path):
    path, kinds = bad_jsonl(tmp_path)
    source = _source("t2i", "jsonl", path)
    assert len(source) == 7 and source.example(0, np.random.default_rng(0)).target.shape == (16, 16, 3)
    expected = {
        "not an object": "expected a JSON object, got list",
        "bomb": "refused: image .*bomb.png of 10,000,000,000 pixels",
        "non-UTF-8": "not UTF-8 text",
        "surrogate": r"text .caf.*. is not valid UTF-8 text",
        "caption not text": "expected text, got int",
        "bad JSON": "not valid JSON",
    }
    for index, (kind, line) in enumerate(kinds.items(), 1):
        with pytest.raises(UnreadableSample, match=rf"captions.jsonl line {line}: {expected[kind]}"):
            source.example(index, np.random.default_rng(0))


def test_bad_captions_and_bombs_in_folders_and_datasets_are_unreadable(tmp_path):
    folder = _source("t2i", "folder", bad_folder(tmp_path / "folder"))
    assert folder.example(0, np.random.default_rng(0)).text
    with pytest.raises(UnreadableSample, match=r"2.png: caption .*2.txt: 'utf-8' codec can't decode"):
        folder.example(2, np.random.default_rng(0))
    with pytest.raises(UnreadableSample, match=r"3.png: refused: image .*3.png of 10,000,000,000 pixels"):
        folder.example(3, np.random.default_rng(0))
    dataset = _source("t2i", "hf", bad_hf(tmp_path))
    assert dataset.example(0, np.random.default_rng(0)).text == "a"
    with pytest.raises(UnreadableSample, match=r"hf row 1: refused: image bytes of 10,000,000,000 pixels"):
        dataset.example(1, np.random.default_rng(0))


def test_training_photos_above_the_inference_limit_are_data(tmp_path):
    from PIL import Image

    (tmp_path / "wide.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (2040, 1356), "red").save(tmp_path / "wide.png")  # a DIV2K-sized photo: 1024 is for inference
    pair = _source("sr", "folder", tmp_path).example(0, np.random.default_rng(0))
    assert pair.target.shape == (16, 16, 3) and (pair.target[..., 0] > 200).all()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped an unreadable sample")]


def _bad_task(kind: str, folder: Path) -> tuple[str, dict, list[str]]:
    """(task, its source config, what the warnings must name) for one kind of source with bad records."""
    if kind == "jsonl":
        path, lines = bad_jsonl(folder)
        return "t2i", {"type": "jsonl", "path": str(path)}, [f"captions.jsonl line {n}:" for n in lines.values()]
    if kind == "folder":
        return "sr", {"type": "folder", "path": str(bad_folder(folder))}, ["2.png: caption", "3.png: refused"]
    return "inpaint", {"type": "hf", "path": str(bad_hf(folder))}, ["hf row 1: refused"]


@pytest.mark.parametrize("kind", ["jsonl", "folder", "hf"])
def test_mtu_train_skips_every_bad_kind_and_finishes(tiny_model, tmp_path, caplog, capsys, kind):
    task, source, named = _bad_task(kind, tmp_path / "data")
    data = config_dict(tiny_model, tmp_path / "run", tasks=(task,), train={"max_steps": 3})
    data["tasks"] = {task: {"source": source}}
    caplog.set_level(logging.WARNING)
    assert main(["train", str(write_config(tmp_path / "c.yaml", data))]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 3 and summary["skipped_samples"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["skipped_samples"] == summary["skipped_samples"]
    warned = _warnings(caplog)
    assert len(warned) == summary["skipped_samples"]
    assert all(any(name in message for message in warned) for name in named), (named, warned)


def test_the_latent_cache_keeps_bad_records_out_and_training_counts_them(tiny_model, tmp_path, caplog):
    path, _ = bad_jsonl(tmp_path / "coco")
    data = config_dict(
        tiny_model,
        tmp_path / "run",
        tasks=("t2i",),
        train={"max_steps": 2},
        data={"pool_size": 8, "cache": "latents", "cache_dir": str(tmp_path / "cache")},
    )
    data["tasks"] = {"t2i": {"source": {"type": "jsonl", "path": str(path)}}}
    caplog.set_level(logging.WARNING)
    summary = train(TrainConfig.from_dict(data))
    assert summary["step"] == 2 and summary["skipped_samples"] > 0
    filled = [r.getMessage() for r in caplog.records if "latent cache of 't2i'" in r.getMessage()]
    assert len(filled) == 6 and any("captions.jsonl line 4: refused" in message for message in filled)
    assert all("when the cache was filled" in message for message in _warnings(caplog))
