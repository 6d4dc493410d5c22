"""The plan's scopes (what is cut for the CPU budget) and shipping the reproduction's model as shapes-mtu."""

from __future__ import annotations

import json

import pytest
import yaml

from mtu.reproduce.plan import CPU_BUDGET, FULL, budget, build_plan, cut_runs, unique_runs
from tests.helpers import save_tiny_sd_pipeline


def test_cpu_budget_keeps_the_main_table_whole_and_lists_what_it_cuts():
    full, cut = build_plan(scope=FULL), build_plan(scope=CPU_BUDGET)
    assert cut["main"] == full["main"]  # three seeds of every method: the verdicts rest on it
    assert set(unique_runs(cut)) < set(unique_runs(full))
    dropped = cut_runs(cut)
    assert set(dropped) == set(unique_runs(full)) - set(unique_runs(cut)) and not cut_runs(full)
    assert {r.tasks for r in cut["pairs"]} == {("sr", "remove")}  # the pair the interference claim can judge
    assert budget(cut, 1000, 0.38)["cpu_hours"] < budget(full, 1000, 0.38)["cpu_hours"]
    main = [(r.seed, r.method) for r in full["main"]]
    assert main[0] == (0, "mtu") and [seed for seed, _ in main] == sorted(seed for seed, _ in main)  # seed-major


def test_quick_plan_is_one_seed_without_pairs():
    quick = build_plan(quick=True)
    assert {r.seed for r in unique_runs(quick)} == {0} and not quick["pairs"] and not quick["extra"]
    assert sorted({r.num_experts for r in quick["experts"]}) == [1, 4]


@pytest.fixture
def trained_mtu(tmp_path):
    """An MTU training output on a tiny base (2 steps): what the shipped run leaves in its model folder."""
    from mtu.reproduce.pilot import REPRODUCE_CONFIG
    from mtu.reproduce.plan import Run
    from mtu.reproduce.runner import train_config
    from mtu.training import train

    base = yaml.safe_load(REPRODUCE_CONFIG.read_text())
    base["model"] = str(save_tiny_sd_pipeline(tmp_path / "base"))
    base["data"].update(batch_size=2, resolution=16, pool_size=4, cache_dir=str(tmp_path / "cache"))
    config = train_config(Run("mtu", ("t2i", "edit"), 2, 0), base, tmp_path / "run", 1)
    return train(config)["model"]


def test_ship_writes_weights_and_a_card_and_replaces_atomically(trained_mtu, tmp_path):
    from mtu.pipelines import MTUPipeline
    from mtu.reproduce.ship import SHIPPED_FILES, ship

    record = {"run": "mtu-n2-t2i+edit-s0", "steps": 2, "device": "cpu",
              "tasks": {"t2i": {"all_correct": 0.25}, "edit": {"all_correct": 0.5, "psnr": 21.5}}}  # fmt: skip
    context = {"per_task": 1, "eval_samples": 4, "eval_steps": 2, "setting": "lr1e-3"}
    out = tmp_path / "assets" / "shapes-mtu"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older ship")
    ship(trained_mtu, record, {"edit": {"psnr": 17.5, "all_correct": 0.0}}, context, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*SHIPPED_FILES, "README.md", "sampler.json"])
    assert [p.name for p in out.parent.iterdir()] == ["shapes-mtu"]  # no staging or old folder left
    card = (out / "README.md").read_text()
    assert "| edit | 0.500 | 0.000 | 21.50 | 17.50 |" in card and "| t2i | 0.250 | — | — | — |" in card
    assert json.loads((out / "mtu_config.json").read_text())["num_experts"] == 2
    pipe = MTUPipeline.from_pretrained(out)  # loads onto the base its config names
    assert pipe.samplers["edit"].num_inference_steps == 2  # the sampler it was evaluated with (issue 28)


def test_shipped_name_resolves_only_when_shipped(monkeypatch, tmp_path):
    import mtu.assets as assets

    monkeypatch.setattr(assets, "SHIPPED_MTU", tmp_path / "shapes-mtu")
    with pytest.raises(FileNotFoundError, match="'shapes-mtu' is not shipped in this installation yet"):
        assets.resolve_model_path("shapes-mtu")
    assert assets.shipped_mtu() is None
    (tmp_path / "shapes-mtu").mkdir()
    (tmp_path / "shapes-mtu" / "mtu_config.json").write_text("{}")
    assert assets.resolve_model_path("shapes-mtu") == tmp_path / "shapes-mtu" == assets.shipped_mtu()
