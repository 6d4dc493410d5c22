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
    pilot = tmp_path / "router_pilot.json"
    pilot.write_text(json.dumps({"choice": {"recipe": chosen.name, "reason": "first to pass (a), (b) and (c)"}}))
    protocol = v3(tmp_path / "runs-v3", pilot)
    mtu, lora = Run("mtu", ("t2i", "sr"), 4, 0), Run("lora", ("t2i", "sr"), 4, 0)
    assert protocol.overrides(mtu) == {**SHARED, **chosen.overrides} and protocol.overrides(lora) == {}
    assert protocol.record_file(mtu) == tmp_path / "runs-v3" / f"{mtu.name}.json"
    assert protocol.record_file(lora) == V2_RECORDS / f"{lora.name}.json"  # not re-run: v2's record
    assert v2().record_file(mtu) == V2_RECORDS / f"{mtu.name}.json" and v2().overrides(mtu) == {}
