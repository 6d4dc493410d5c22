"""Protocol v3 re-runs the MTU runs with the router pilot's recipe and reuses v2's other records."""

from __future__ import annotations

import json

import pytest

from mtu.reproduce.plan import Run
from mtu.reproduce.protocol import V2_RECORDS, v2, v3
from mtu.reproduce.router_pilot import CANDIDATES, SHARED


def test_v3_needs_the_router_pilot_choice(tmp_path):
    empty = tmp_path / "router_pilot.json"
    empty.write_text(json.dumps({"runs": {}, "choice": {"recipe": None, "reason": "not every candidate has finished"}}))
    with pytest.raises(ValueError, match="router pilot's choice"):
        v3(tmp_path / "runs-v3", empty)


def test_v3_applies_the_chosen_recipe_to_mtu_runs_only_and_reuses_v2_records(tmp_path):
    chosen = CANDIDATES[2]
    pilot, levers = _records(tmp_path, chosen.name, False)
    protocol = v3(tmp_path / "runs-v3", pilot, levers_file=levers)
    mtu, lora = Run("mtu", ("t2i", "sr"), 4, 0), Run("lora", ("t2i", "sr"), 4, 0)
    assert protocol.overrides(mtu) == {**SHARED, **chosen.overrides} and protocol.overrides(lora) == {}
    assert protocol.record_file(mtu) == tmp_path / "runs-v3" / f"{mtu.name}.json"
    assert protocol.record_file(lora) == V2_RECORDS / f"{lora.name}.json"  # not re-run: v2's record
    assert v2().record_file(mtu) == V2_RECORDS / f"{mtu.name}.json" and v2().overrides(mtu) == {}


def _records(tmp_path, recipe, snr_adopted):
    pilot, levers = tmp_path / "router_pilot.json", tmp_path / "levers.json"
    pilot.write_text(json.dumps({"choice": {"recipe": recipe, "reason": "the rule"}}))
    levers.write_text(json.dumps({"runs": {}, "snr_adopted": snr_adopted}))
    return pilot, levers


def test_v3_waits_for_the_levers_verdict(tmp_path):
    pilot, levers = _records(tmp_path, CANDIDATES[0].name, None)
    with pytest.raises(ValueError, match="levers' min-SNR verdict"):
        v3(tmp_path / "runs-v3", pilot, levers_file=levers)


def test_an_adopted_min_snr_re_runs_every_trained_method_with_it(tmp_path):
    pilot, levers = _records(tmp_path, CANDIDATES[0].name, True)
    protocol = v3(tmp_path / "runs-v3", pilot, levers_file=levers)
    mtu, lora, base = Run("mtu", ("t2i", "sr"), 4, 0), Run("lora", ("t2i", "sr"), 4, 0), Run("base", ("t2i",), 4, 0)
    assert protocol.overrides(mtu) == {**SHARED, "train.snr_gamma": 5.0}
    assert protocol.overrides(lora) == {"train.snr_gamma": 5.0}
    assert protocol.record_file(lora) == tmp_path / "runs-v3" / f"{lora.name}.json"  # re-run, not v2's
    assert protocol.record_file(base) == V2_RECORDS / f"{base.name}.json"  # nothing trained: v2's
    pilot, levers = _records(tmp_path, CANDIDATES[0].name, False)
    kept = v3(tmp_path / "runs-v3", pilot, levers_file=levers)
    assert kept.overrides(lora) == {} and "train.snr_gamma" not in kept.overrides(mtu)
