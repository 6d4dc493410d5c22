"""Multi-task batches: determinism, layouts, weights, dropout, the paper's data formats, unreadable samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtu.training.config import SourceConfig, TaskConfig
from mtu.training.data import Dropout, Layout, StepBatches
from mtu.training.degradation import second_order_degrade
from mtu.training.sources import ShapesSource, UnreadableSample, open_source
from tests.helpers import write_coco_jsonl, write_gqa_inpaint_jsonl, write_image_folder, write_ip2p_dataset

TASKS = ("t2i", "edit", "sr", "remove", "inpaint")


def shapes_batches(layout: Layout, weights=None, one_task=False, seed=0) -> StepBatches:
    sources = {task: ShapesSource(task, 16) for task in TASKS}
    weights = weights or dict.fromkeys(TASKS, 1.0)
    return StepBatches(sources, weights, seed, layout, Dropout(0.1, 0.1, 0.1), one_task_per_batch=one_task)


def by_sample(batches: list[dict]) -> dict[int, tuple]:
    """noise seed -> (task, text, target) for every sample of some batches."""
    found = {}
    for batch in batches:
        for i, seed in enumerate(batch["noise_seeds"].tolist()):
            found[seed] = (int(batch["task_ids"][i]), batch["texts"][i], batch["target"][i], batch["image"][i])
    return found


def test_batches_are_a_function_of_seed_and_step():
    first, again = shapes_batches(Layout(6))[3], shapes_batches(Layout(6))[3]
    assert torch.equal(first["target"], again["target"]) and first["texts"] == again["texts"]
    assert not torch.equal(first["target"], shapes_batches(Layout(6))[4]["target"])
    assert not torch.equal(first["target"], shapes_batches(Layout(6), seed=1)[3]["target"])
    assert first["task_ids"].tolist() == sorted(first["task_ids"].tolist())  # task runs are contiguous
    assert first["step"] == 3


def test_processes_and_accumulation_split_the_same_global_batch():
    step = 2
    whole = by_sample([shapes_batches(Layout(8))[step]])
    two_processes = by_sample([shapes_batches(Layout(4, 1, 2, p))[step] for p in (0, 1)])
    accumulated = shapes_batches(Layout(4, 2))
    by_micro = by_sample([accumulated[2 * step], accumulated[2 * step + 1]])
    assert whole.keys() == two_processes.keys() == by_micro.keys() and len(whole) == 8
    for seed, (task, text, target, image) in whole.items():
        for other in (two_processes, by_micro):
            assert other[seed][:2] == (task, text)
            assert torch.equal(other[seed][2], target) and torch.equal(other[seed][3], image)


def test_weights_and_single_task_batches():
    batches = shapes_batches(Layout(16), weights={**dict.fromkeys(TASKS, 1.0), "sr": 0.0})
    seen = {t for k in range(6) for t in batches[k]["task_ids"].tolist()}
    assert seen == {0, 1, 3, 4}
    single = shapes_batches(Layout(4, 2, 2, 1), one_task=True)
    for k in range(6):
        tasks = set(single[k]["task_ids"].tolist())
        assert len(tasks) == 1
        other_process = shapes_batches(Layout(4, 2, 2, 0), one_task=True)[k]
        assert tasks == set(other_process["task_ids"].tolist())  # every process trains the same task


def test_dropout_regions_follow_instructpix2pix():
    dropout = Dropout(text=0.1, image=0.2, both=0.3)
    draws = (np.arange(1000) + 0.5) / 1000  # cell midpoints: no float ties at the boundaries
    outcomes = [dropout.decide(r, has_image=True) for r in draws]
    assert outcomes.count((True, False)) == 100 and outcomes.count((False, True)) == 200
    assert outcomes.count((True, True)) == 300 and outcomes.count((False, False)) == 400
    text_only = [dropout.decide(r, has_image=False) for r in draws]
    assert text_only.count((True, False)) == 400 and text_only.count((False, False)) == 600


def test_dropped_text_and_images_in_batches():
    batch = StepBatches({"edit": ShapesSource("edit", 16)}, {"edit": 1.0}, 0, Layout(64), Dropout(0.2, 0.2, 0.2))[0]
    dropped_text = [t == "" for t in batch["texts"]]
    assert 15 < sum(dropped_text) < 40 and 15 < int(batch["drop_image"].sum()) < 40
    sources = {"inpaint": ShapesSource("inpaint", 16)}
    inpaint = StepBatches(sources, {"inpaint": 1.0}, 0, Layout(32), Dropout(0.2, 0.2, 0.2))[0]
    assert not inpaint["drop_image"].any() and inpaint["mask"].sum() > 0  # inpainting keeps its masked image


def _task(source_type, path, **extra) -> TaskConfig:
    return TaskConfig(source=SourceConfig(type=source_type, path=str(path)), **extra)


def test_sources_in_the_papers_formats(tmp_path):
    rng = np.random.default_rng(0)
    coco = open_source("t2i", _task("jsonl", write_coco_jsonl(tmp_path / "coco")), 16)
    pair = coco.draw(rng)
    assert pair.target.shape == (16, 16, 3) and pair.image is None and "background" in pair.text
    ip2p = open_source("edit", _task("hf", write_ip2p_dataset(tmp_path)), 16)
    pair = ip2p.draw(rng)
    assert pair.text.startswith("turn it into") and pair.image.shape == pair.target.shape == (16, 16, 3)
    gqa = open_source("remove", _task("jsonl", write_gqa_inpaint_jsonl(tmp_path / "gqa")), 16)
    pair = gqa.draw(rng)
    assert pair.text == "remove the object" and not np.array_equal(pair.image, pair.target)
    folder = write_image_folder(tmp_path / "hr", size=64)
    sr = open_source("sr", _task("folder", folder), 32)
    pair = sr.draw(rng)
    assert pair.image.shape == pair.target.shape == (32, 32, 3) and pair.text
    error = np.abs(pair.image.astype(float) - pair.target).mean()
    assert 1 < error < 60  # degraded, but the same picture
    inpaint = open_source("inpaint", _task("folder", folder), 32)
    pair = inpaint.draw(rng)
    assert pair.mask.shape == (32, 32) and pair.mask.any() and np.array_equal(pair.image, pair.target)


def test_missing_columns_are_a_clear_error(tmp_path):
    path = write_gqa_inpaint_jsonl(tmp_path)
    expected = r"needs columns \{'target': 'edited_image', 'image': 'input_image'\}.*set tasks.edit.source.columns"
    with pytest.raises(ValueError, match=expected):
        open_source("edit", _task("jsonl", path), 16)
    columns = {"image": "source_image", "text": "instruction", "target": "target_image"}
    renamed = TaskConfig(source=SourceConfig("jsonl", str(path), columns=columns))
    assert open_source("edit", renamed, 16).draw(np.random.default_rng(0)).text == "remove the object"


def test_unreadable_samples_are_skipped_and_counted(tmp_path):
    path = write_gqa_inpaint_jsonl(tmp_path, count=4)
    (tmp_path / "source" / "1.png").write_bytes(b"not a png")
    (tmp_path / "target" / "2.png").unlink()
    with open(path, "a") as handle:
        handle.write("{not json\n")
    source = open_source("remove", _task("jsonl", path), 16)
    with pytest.raises(UnreadableSample, match=r"gqa_inpaint.jsonl line 5: not valid JSON"):
        source.example(4, np.random.default_rng(0))
    batches = StepBatches({"remove": source}, {"remove": 1.0}, 0, Layout(16), Dropout(0, 0, 0))
    batch = batches[0]
    assert batch["target"].shape[0] == 16 and len(batch["skipped"]) > 0
    assert any("gqa_inpaint.jsonl line 2: cannot read image" in m and "1.png" in m for m in batch["skipped"])
    everything_broken = StepBatches({"remove": source}, {"remove": 1.0}, 0, Layout(16), Dropout(0, 0, 0), max_skips=1)
    with pytest.raises(RuntimeError, match="unreadable samples in a row"):
        [everything_broken[k] for k in range(5)]


def test_second_order_degradation():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    low = second_order_degrade(image, np.random.default_rng(1), scale=4)
    assert low.shape == (16, 16, 3) and low.dtype == np.uint8
    assert not np.array_equal(low, second_order_degrade(image, np.random.default_rng(2), scale=4))
