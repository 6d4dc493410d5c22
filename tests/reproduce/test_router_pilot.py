"""Protocol v3's multi-task pilot: the pre-registered choice rule, read from constructed curves."""

from __future__ import annotations

import pytest

from mtu.reproduce.router_pilot import CANDIDATES, choose, recipe_config, verdict

BASELINES = {"edit": {"psnr": 17.4}, "sr": {"psnr": 23.3}, "remove": {"psnr": 20.3}}
BASE_T2I = 0.98


def point(t2i=0.97, sr=(28.0, 0.6), remove=(30.0, 0.55), edit=(19.0, 0.1), dependent=8, dead=0, saturated=0):
    return {
        "t2i": {"psnr": None, "all_correct": t2i},
        "edit": {"psnr": edit[0], "all_correct": edit[1]},
        "sr": {"psnr": sr[0], "all_correct": sr[1]},
        "remove": {"psnr": remove[0], "all_correct": remove[1]},
        "router_health": {"task_dependent": dependent, "dead": dead, "saturated": saturated, "layers": 13},
    }


def verdicts(points: dict) -> dict:
    return {name: verdict({"curve": {"8000": p}}, BASELINES, BASE_T2I, 8000) for name, p in points.items()}


def test_verdict_reads_the_three_criteria_at_the_last_checkpoint():
    good = verdict({"curve": {"8000": point()}}, BASELINES, BASE_T2I, 8000)
    assert good["a_learned_tasks_pass"] and good["b_t2i_kept"] and good["c_routing_healthy"]
    assert not good["edit_passes"]  # edit is reported, not required
    assert (
        verdict({"curve": {"8000": point(remove=(30.0, 0.45))}}, BASELINES, BASE_T2I, 8000)["a_learned_tasks_pass"]
        is False
    )
    assert verdict({"curve": {"8000": point(t2i=0.95)}}, BASELINES, BASE_T2I, 8000)["b_t2i_kept"] is False
    assert verdict({"curve": {"8000": point(saturated=1)}}, BASELINES, BASE_T2I, 8000)["c_routing_healthy"] is False
    assert verdict({"curve": {"8000": point(dependent=6)}}, BASELINES, BASE_T2I, 8000)["c_routing_healthy"] is False
    assert verdict({"curve": {"6000": point()}}, BASELINES, BASE_T2I, 8000) == {"finished": False}


def test_choose_takes_the_first_candidate_in_declared_order_that_passes_all_three():
    names = [c.name for c in CANDIDATES]
    points = {name: point(t2i=0.90) for name in names}  # nobody keeps t2i ...
    points[names[2]] = point()  # ... but the third
    points[names[3]] = point()
    assert choose(verdicts(points)) == {"recipe": names[2], "reason": "first to pass (a), (b) and (c)"}


def test_choose_falls_back_as_pre_registered():
    names = [c.name for c in CANDIDATES]
    points = {name: point(t2i=0.90, dependent=3) for name in names}
    points[names[3]] = point(t2i=0.90)  # (a) and (c), not (b)
    assert choose(verdicts(points))["recipe"] == names[3]
    points[names[3]] = point(t2i=0.90, dead=2)
    chosen = choose(verdicts(points))
    assert chosen["recipe"] == names[0] and "routing health failed" in chosen["reason"]


def test_choose_waits_for_every_candidate():
    names = [c.name for c in CANDIDATES]
    assert choose(verdicts({names[0]: point()}))["recipe"] is None


def test_recipe_config_applies_the_shared_rates_and_the_recipe(tmp_path):
    import yaml

    from mtu.reproduce.pilot import REPRODUCE_CONFIG

    base = yaml.safe_load(REPRODUCE_CONFIG.read_text())
    config = recipe_config(CANDIDATES[3], base, tmp_path, {"max_steps": 8000, "every": 2000})
    assert config.method == "mtu" and list(config.tasks) == ["t2i", "edit", "sr", "remove"]
    assert config.train.lr_multipliers == {"conv_in": 10.0} and config.train.learning_rate == pytest.approx(1e-3)
    assert config.mtu.router_bias is False and config.train.router_z_loss == pytest.approx(1e-3)
