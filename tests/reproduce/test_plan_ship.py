"""The plan's scopes (what is cut for the CPU budget) and shipping the reproduction's model as shapes-mtu."""

from __future__ import annotations

import json

import pytest
import yaml

from mtu.reproduce.plan import CPU_BUDGET, DEFAULT_SCOPE, FULL, V3_BUDGET, budget, build_plan, cut_runs, unique_runs
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


def test_v3_budget_cuts_only_the_colorize_group_past_seed_0():
    v2, v3 = build_plan(scope=CPU_BUDGET), build_plan(scope=V3_BUDGET)
    assert {name: runs for name, runs in v3.items() if name != "adding"} == {
        name: runs for name, runs in v2.items() if name != "adding"
    }
    assert {r.seed for r in v3["adding"]} == {0} and set(v3["adding"]) < set(v2["adding"])
    assert {r.method for r in v3["adding"]} == {"add-task", "mtu", "lora"}  # seed 0 of the group stays whole
    assert DEFAULT_SCOPE == {"v2": "cpu-budget", "v3": "cpu-budget-v3"}


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


def _health(task_dependent: int, saturated: int) -> dict:
    return {"tasks": ["t2i", "edit", "sr", "remove"], "layers": 13, "task_dependent": task_dependent, "dead": 0,
            "saturated": saturated, "mean_js_bits": 0.1, "js_threshold_bits": 0.05}  # fmt: skip


def test_shipped_bars_are_the_issues_bars():
    from mtu.reproduce.ship_check import bars

    scores = {"t2i": {"all_correct": 0.97, "psnr": None}, "edit": {"all_correct": 0.5, "psnr": 19.0},
              "sr": {"all_correct": 0.52, "psnr": 26.0}, "remove": {"all_correct": 0.49, "psnr": 30.0}}  # fmt: skip
    baselines = {"edit": {"all_correct": 0.0, "psnr": 17.0}, "sr": {"all_correct": 0.52, "psnr": 23.0},
                 "remove": {"all_correct": 0.0, "psnr": 20.0}}  # fmt: skip
    met = {row["what"]: row["met"] for row in bars(scores, baselines, 0.98, _health(7, 0))}
    assert met == {
        "routing: layers routing by task": True,  # 7 of 13 is enough
        "routing: layers saturated for every task": True,
        "t2i: all-correct": True,  # 0.97 is within 0.02 of the base's 0.98
        "edit: PSNR (dB)": True,  # exactly copy + 2 dB
        "edit: all-correct": True,  # exactly the protocol's 0.5
        "sr: PSNR (dB)": True,
        "sr: all-correct": False,  # equal to bicubic's is not above it
        "remove: PSNR (dB)": True,
        "remove: all-correct": False,
    }
    worse = {row["what"]: row["met"] for row in bars(scores, baselines, 0.995, _health(6, 1))}
    assert not worse["t2i: all-correct"] and not worse["routing: layers routing by task"]
    assert not worse["routing: layers saturated for every task"]


def test_shipping_writes_the_card_with_its_check(trained_mtu, tmp_path):
    """The card of a shipped run gains the base's t2i score and the check on
    examples no run uses (scored here, on a tiny model, so every bar is missed)."""
    from mtu.reproduce import runner
    from mtu.reproduce.plan import Run
    from mtu.reproduce.ship_check import CHECK_SEED

    record = {"run": "mtu-n2-t2i+edit-s0", "steps": 2, "device": "cpu",
              "tasks": {"t2i": {"all_correct": 0.25}, "edit": {"all_correct": 0.5, "psnr": 21.5}}}  # fmt: skip
    base = {"model": str(tmp_path / "base" / "pipeline"), "tasks": {"t2i": {}, "edit": {}}}  # the fixture's tiny base
    proto = runner.PROTOCOLS["v2"](records=tmp_path / "records")
    base_record = {"tasks": {"t2i": {"all_correct": 0.75}}}
    (tmp_path / "records").mkdir()
    (proto.record_file(Run("base", ("t2i",), 4, 0))).write_text(json.dumps(base_record))
    settings = {"per_task": 1, "eval_samples": 2, "eval_steps": 1, "setting": "lr1e-3", "protocol": proto,
                "ship_to": str(tmp_path / "shapes-mtu")}  # fmt: skip
    runner._ship(trained_mtu, record, base, settings)
    card = (tmp_path / "shapes-mtu" / "README.md").read_text()
    assert "`shapes-base`, which scores\n0.750 all-correct on the same test captions" in card
    assert f"from evaluation seed {CHECK_SEED}" in card and "| t2i: all-correct |" in card
    assert "| edit: all-correct | 0.000 | >= 0.500 (the protocol's bar) | **no** |" in card
    assert "routing: layers routing by task" in card


def test_ship_only_names_what_is_missing(tmp_path):
    from mtu.reproduce.pilot import REPRODUCE_CONFIG
    from mtu.reproduce.runner import ship_only

    with pytest.raises(FileNotFoundError, match="has not finished here .* run `mtu reproduce --protocol v2` first"):
        ship_only(tmp_path / "out", REPRODUCE_CONFIG, "v2", ship_to=tmp_path / "shapes-mtu")
    assert not (tmp_path / "shapes-mtu").exists()
