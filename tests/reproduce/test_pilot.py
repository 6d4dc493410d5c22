"""The pilot (protocol v2, step 4): baselines, the bar, the choice of S, and a quick end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mtu.data.shapes.baselines import baseline_outputs
from mtu.data.shapes.tasks import TEST_SEED, VALIDATION_SEED, evaluation_set
from mtu.evaluation.shapes_eval import evaluate_baseline
from mtu.reproduce.pilot import PILOT_TASKS, REPRODUCE_CONFIG, choose, passes, run_pilot
from tests.helpers import save_tiny_sd_pipeline


def test_validation_and_test_sets_differ():
    validation, test = evaluation_set("edit", 8, VALIDATION_SEED), evaluation_set("edit", 8, TEST_SEED)
    assert not any(np.array_equal(a.image, b.image) and a.prompt == b.prompt for a, b in zip(validation, test))


def test_baselines_do_what_they_say():
    example = evaluation_set("inpaint", 1, VALIDATION_SEED)[0]
    filled = baseline_outputs("inpaint", [example])[0]
    hole = example.mask.astype(bool)
    assert np.array_equal(filled[~hole], example.image[~hole])  # known pixels pasted
    assert len(np.unique(filled[hole].reshape(-1, 3), axis=0)) == 1  # one colour in the hole
    edit = evaluation_set("edit", 1, VALIDATION_SEED)[0]
    assert np.array_equal(baseline_outputs("edit", [edit])[0], edit.image)
    sr = evaluation_set("sr", 1, VALIDATION_SEED)[0]
    assert baseline_outputs("sr", [sr])[0].shape == sr.target.shape
    with pytest.raises(ValueError, match="no no-learning baseline"):
        baseline_outputs("t2i", [])


def test_baseline_scores_are_finite_and_per_example():
    inpaint = evaluate_baseline("inpaint", 16, VALIDATION_SEED, per_example=True)
    assert all(np.isfinite(inpaint["per_example"]["psnr_hole"])) and max(inpaint["per_example"]["psnr_hole"]) <= 60
    assert len(inpaint["per_example"]["all_correct"]) == 16
    copy = evaluate_baseline("remove", 16, VALIDATION_SEED)
    assert 10 < copy["psnr"] < 40 and copy["all_correct"] == 0.0  # copying never removes the object


def _record(task, setting, curve):
    return {
        "task": task,
        "setting": setting,
        "curve": {str(k): {"psnr": p, "all_correct": a} for k, (p, a) in curve.items()},
    }


def test_the_bar_and_the_choice_of_s():
    baselines = {task: {"psnr": 20.0, "all_correct": 0.0} for task in PILOT_TASKS if task != "t2i"}
    assert passes("edit", {"psnr": 22.0, "all_correct": 0.5}, baselines["edit"])
    assert not passes("edit", {"psnr": 21.9, "all_correct": 0.9}, baselines["edit"])  # < 2 dB over the baseline
    assert not passes("edit", {"psnr": 30.0, "all_correct": 0.49}, baselines["edit"])
    assert passes("t2i", {"psnr": None, "all_correct": 0.9}, None)  # t2i: the accuracy bar alone
    good = {1000: (21.0, 0.2), 2000: (23.0, 0.6), 3000: (24.0, 0.7)}
    slow = {1000: (21.0, 0.2), 2000: (21.0, 0.3), 3000: (23.0, 0.6)}
    curves = {f"{t}-{s}": _record(t, s, good if s == "a" or t != "edit" else slow) for t in PILOT_TASKS for s in "ab"}
    curves["t2i-b"] = _record("t2i", "b", {1000: (0, 0.9), 2000: (0, 0.9), 3000: (0, 0.9)})
    choice = choose(curves, baselines)
    assert choice["S"] == 2000 and choice["setting"] == "a"  # setting b needs 3000 steps for edit
    never = choose({k: v for k, v in curves.items() if k != "sr-a"}, baselines)  # setting a lacks sr
    assert never["S"] == 3000 and never["setting"] == "b"
    failing = {k: _record(v["task"], v["setting"], {1000: (20.0, 0.1)}) for k, v in curves.items()}
    assert choose(failing, baselines)["S"] is None


def test_quick_pilot_end_to_end_and_resume(tmp_path):
    data = yaml.safe_load(REPRODUCE_CONFIG.read_text())
    data["model"] = str(save_tiny_sd_pipeline(tmp_path / "base"))
    data["data"].update(batch_size=2, resolution=16, pool_size=8, cache_dir=str(tmp_path / "cache"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    results = tmp_path / "pilot.json"
    record = run_pilot(tmp_path / "runs", config, results, quick=True, tasks=("t2i", "edit"))
    assert set(record["baselines"]) == {"edit", "sr", "remove"}  # every pilot task with a baseline
    assert len(record["runs"]) == 2 * 3  # two tasks x three settings
    for run in record["runs"].values():
        assert sorted(run["curve"], key=int) == ["2", "4"]
    assert json.loads(results.read_text())["runs"] == record["runs"]
    # A second call finds every curve complete: nothing is trained again.
    again = run_pilot(tmp_path / "runs", config, results, quick=True, tasks=("t2i", "edit"))
    assert again["runs"] == record["runs"]
