"""`mtu reproduce --quick` and `mtu quickstart` end to end on a tiny random base.

Tiny budgets: the code path, not the numbers.
"""

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


@pytest.fixture(scope="module")
def tiny_reproduce_config(tmp_path_factory):
    """configs/reproduce.yaml (protocol v2: pools, cached latents, sr without prompt) on a tiny random base."""
    from mtu.reproduce.pilot import REPRODUCE_CONFIG

    root = tmp_path_factory.mktemp("repro-v2")
    data = yaml.safe_load(REPRODUCE_CONFIG.read_text())
    data["model"] = str(save_tiny_sd_pipeline(root / "base"))
    data["data"].update(batch_size=2, resolution=16, pool_size=8, cache_dir=str(root / "cache"))
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quick_reproduction_writes_results_records_and_reuses_them(tiny_reproduce_config, tmp_path):
    from mtu.reproduce import reproduce

    records, results = tmp_path / "records", tmp_path / "RESULTS.md"
    kwargs = dict(quick=True, per_task=1, eval_samples=2, eval_steps=1, tasks=("t2i", "edit"), records=records,
                  pilot=tmp_path / "no-pilot.json", device="cpu")  # fmt: skip
    report = reproduce(tmp_path / "runs", tiny_reproduce_config, results=results, **kwargs)
    text = report.read_text()
    for section in (
        "## Claims",
        "## Main table (test)",
        "## Number of experts",
        "Fig. 2",
        "Fig. 5",
        "no-learning baseline",
        "## Adding a task later (colorize)",
    ):
        assert section in text
    for claim in ("on par with or better than the single-task models", "MTU beats LoRA-FFN", "T2I quality is kept"):
        assert claim in text
    assert "undecidable at this budget" in text  # 1 step per task learns nothing: never "does not hold"
    found = sorted(records.glob("*.json"))
    assert len(found) == 10  # base, 2 single-task, MTU N=4 and N=1, LoRA, IA3, 2 full fine-tunes, colorize added
    edit = json.loads((records / "mtu-n4-t2i+edit-s0.json").read_text())
    assert edit["steps"] == 2 and len(edit["tasks"]["edit"]["per_example"]["psnr"]) == 2  # 2 tasks x S
    added = json.loads((records / "add-task-colorize-on-mtu-n4-t2i+edit-s0.json").read_text())
    assert added["old_tasks_max_abs_difference"] == {"t2i": 0.0, "edit": 0.0} and added["steps"] == 1
    assert "| jointly from the start (MTU on 3 tasks, 3 x S steps) | not run yet | not run yet |" in text  # quick
    stamps = {path: path.stat().st_mtime_ns for path in found}
    import shutil

    shutil.rmtree(tmp_path / "runs")  # a fresh clone: only the committed records are there
    again = reproduce(tmp_path / "runs", tiny_reproduce_config, results=tmp_path / "again.md", **kwargs)
    assert {path: path.stat().st_mtime_ns for path in found} == stamps  # recorded: nothing re-run
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    claims = [page.split("## Claims")[1].split("## Main table")[0] for page in (again.read_text(), text)]
    assert claims[0] == claims[1]


def test_sr_trains_and_is_scored_without_its_prompt(tiny_reproduce_config, tmp_path):
    from mtu.reproduce.plan import Run
    from mtu.reproduce.runner import run_once, train_config

    base = yaml.safe_load(tiny_reproduce_config.read_text())
    run = Run("single-task", ("sr",), 2, 0)
    assert train_config(run, base, tmp_path, 3).tasks["sr"].prompt is False
    record = run_once(
        run, tmp_path / run.name, tmp_path / "records", base, {"per_task": 1, "eval_samples": 1, "eval_steps": 1}
    )
    assert record["tasks"]["sr"]["prompt"] is False


def test_quickstart_writes_a_report(tiny_config, tmp_path):
    from mtu.quickstart import quickstart

    report = quickstart(tmp_path / "qs", steps=1, eval_samples=1, config=tiny_config, eval_steps=1, shipped=None)
    text = report.read_text()
    assert "| t2i |" in text and "| inpaint |" in text and "![router](router.png)" in text
    assert "router health over " in text and "layers route by task" in text
    assert all(
        (tmp_path / "qs" / f"examples-{task}.png").is_file() for task in ("t2i", "edit", "sr", "remove", "inpaint")
    )
    metrics = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert set(metrics["after"]) == {
        "t2i",
        "edit",
        "sr",
        "remove",
        "inpaint",
        "sr (image only)",
        "inpaint (image only)",
    }
    assert not metrics["after"]["sr (image only)"]["prompt"] and metrics["after"]["sr"]["prompt"]
    assert "| sr (image only) |" in text
    assert "not shipped in this installation" in text and "shipped" not in metrics  # shipped=None below


def test_quickstart_scores_the_shipped_model_on_the_same_examples(tiny_config, tmp_path):
    from mtu.quickstart import quickstart

    first = quickstart(tmp_path / "qs", steps=1, eval_samples=1, config=tiny_config, eval_steps=1, shipped=None)
    assert "not shipped in this installation" in first.read_text()
    shipped = tmp_path / "qs" / "run" / "model"  # any trained MTU folder stands in for shapes-mtu
    report = quickstart(tmp_path / "qs", steps=1, eval_samples=1, config=tiny_config, eval_steps=1, shipped=shipped)
    metrics = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert metrics["shipped"] == metrics["after"]  # the same model on the same examples scores the same
    assert "shapes-mtu, same examples" in report.read_text() and (tmp_path / "qs" / "shipped-edit.png").is_file()


def test_report_figures_folder_keeps_only_what_the_report_shows(tmp_path):
    from mtu.reproduce.report import _remove_unused_figures

    figures = tmp_path / "RESULTS_figures"
    figures.mkdir()
    for name in ("router_layers.png", "router.png", "notes.txt"):
        (figures / name).write_bytes(b"x")
    _remove_unused_figures(figures, "![router per layer](RESULTS_figures/router_layers.png)")
    assert sorted(p.name for p in figures.iterdir()) == ["notes.txt", "router_layers.png"]
