"""`mtu reproduce --quick` and `mtu quickstart` end to end on a tiny random base (tiny budgets: the code path, not the numbers)."""

from __future__ import annotations

import json

import pytest
import yaml

from mtu.quickstart import DEFAULT_CONFIG
from tests.helpers import save_tiny_sd_pipeline


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """configs/shapes.yaml on a tiny random base, batch 2."""
    root = tmp_path_factory.mktemp("repro")
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["model"] = str(save_tiny_sd_pipeline(root / "base"))
    data["data"]["batch_size"] = 2
    data["data"]["resolution"] = 16  # the tiny VAE's native size: keeps every step cheap
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quick_reproduction_writes_results_and_reuses_runs(tiny_config, tmp_path):
    from mtu.reproduce import reproduce

    runs, results = tmp_path / "runs", tmp_path / "RESULTS.md"
    report = reproduce(runs, tiny_config, quick=True, seeds=(0,), steps=1, eval_samples=1, results=results, tasks=("t2i", "edit"), eval_steps=1)
    text = report.read_text()
    for section in ("## Claims", "## Main table", "## Number of experts", "Fig. 2", "Fig. 5"):
        assert section in text
    for claim in ("single-task models on every task", "beats LoRA-FFN", "beats IA3-FFN", "T2I quality is kept"):
        assert claim in text
    figures = tmp_path / "RESULTS_figures"
    assert {p.name for p in figures.iterdir()} >= {"router.png", "deviation_per_parameter.png", "deviation_raw.png"}
    finished = sorted(runs.glob("*/metrics.json"))
    assert len(finished) == 9  # base, 2 single-task, MTU N=4 and N=1, LoRA, IA3, 2 full fine-tunes
    stamps = {path: path.stat().st_mtime_ns for path in finished}
    reproduce(runs, tiny_config, quick=True, seeds=(0,), steps=1, eval_samples=1, results=results, tasks=("t2i", "edit"), eval_steps=1)
    assert {path: path.stat().st_mtime_ns for path in finished} == stamps  # cached: nothing re-run


def test_quickstart_writes_a_report(tiny_config, tmp_path):
    from mtu.quickstart import quickstart

    report = quickstart(tmp_path / "qs", steps=1, eval_samples=1, config=tiny_config, eval_steps=1)
    text = report.read_text()
    assert "| t2i |" in text and "| inpaint |" in text and "![router](router.png)" in text
    assert all((tmp_path / "qs" / f"examples-{task}.png").is_file() for task in ("t2i", "edit", "sr", "remove", "inpaint"))
    metrics = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert set(metrics["after"]) == {"t2i", "edit", "sr", "remove", "inpaint", "sr (image only)", "inpaint (image only)"}
    assert not metrics["after"]["sr (image only)"]["prompt"] and metrics["after"]["sr"]["prompt"]
    assert "| sr (image only) |" in text


def test_parallel_jobs_give_the_same_runs_as_one_process(tiny_config, tmp_path):
    from mtu.reproduce import reproduce

    kwargs = dict(quick=True, seeds=(0,), steps=2, eval_samples=1, tasks=("t2i", "edit"), eval_steps=1, device="cpu")
    reproduce(tmp_path / "serial", tiny_config, results=tmp_path / "serial.md", **kwargs)
    reproduce(tmp_path / "parallel", tiny_config, results=tmp_path / "parallel.md", jobs=2, **kwargs)
    serial = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "serial").glob("*/metrics.json")}
    parallel = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "parallel").glob("*/metrics.json")}
    assert serial.keys() == parallel.keys() and len(serial) == 9
    for name, result in serial.items():
        for task, scores in result["tasks"].items():
            for metric, value in scores.items():
                if isinstance(value, float):
                    assert parallel[name]["tasks"][task][metric] == pytest.approx(value, rel=1e-3, abs=1e-4), (name, metric)


def test_runs_scored_before_image_only_scoring_get_it_from_their_model_or_are_redone(tiny_config, tmp_path):
    from mtu.reproduce.plan import Run
    from mtu.reproduce.runner import run_once

    base = yaml.safe_load(tiny_config.read_text())
    settings = {"steps": 1, "eval_samples": 1, "eval_steps": 1}
    run = Run("mtu", ("t2i", "sr"), 2, 0)
    assert run.scored == ("t2i", "sr", "sr (image only)") and Run("full", ("sr",), 2, 0).scored == ("sr",)
    folder = tmp_path / run.name
    first = run_once(run, folder, base, settings)
    assert not first["tasks"]["sr (image only)"]["prompt"] and first["tasks"]["sr"]["prompt"]

    # Metrics written before image-only scoring existed, model still there: only the missing score is added.
    old = {**first, "tasks": {k: v for k, v in first["tasks"].items() if k != "sr (image only)"}, "marker": 1}
    (folder / "metrics.json").write_text(json.dumps(old))
    weights = folder / "train" / "model" / "mtu_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    upgraded = run_once(run, folder, base, settings)
    assert upgraded["marker"] == 1 and upgraded["tasks"]["sr"] == first["tasks"]["sr"]  # kept, not re-measured
    assert upgraded["tasks"]["sr (image only)"] == first["tasks"]["sr (image only)"]
    assert weights.stat().st_mtime_ns == stamp  # not retrained

    # Metrics copied in without their model: the run is trained and scored again, all from one model.
    import shutil

    shutil.rmtree(folder / "train")
    (folder / "metrics.json").write_text(json.dumps(old))
    redone = run_once(run, folder, base, settings)
    assert "marker" not in redone and set(redone["tasks"]) == set(run.scored) and weights.is_file()
