"""Which protocol a `mtu reproduce` call runs: v2 (the committed report) or v3 (docs/reproduction.md).

v3 changes the MTU recipe (the router recipe chosen by the multi-task pilot, `router_pilot`), so it re-runs
the runs that train MTU experts and routers (method "mtu", and "add-task", which extends an MTU model) into
its own records folder, and takes every other run's record (single-task, LoRA, IA3, full, base) from v2's:
the same recipe, trained once. If the learning-speed levers (`levers`) adopt min-SNR-gamma, the shared
recipe changes and every trained method re-runs with it. v2's records stay as they are, so its report stays
readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtu.methods import Method
from mtu.reproduce import levers as lever_runs

V2_RECORDS = Path("reproduction") / "runs"
V3_RECORDS = Path("reproduction") / "runs-v3"
RERUN_IN_V3 = (Method.MTU, Method.ADD_TASK)


@dataclass(frozen=True)
class Protocol:
    """Where records go and come from, and what a run's training config changes.

    Attributes:
        name: "v2" or "v3".
        records: the folder this protocol writes records to.
        reused: a folder of records that this protocol takes as they are, for methods it does not re-run.
        rerun: the methods this protocol trains itself.
        method_overrides: method -> config overrides (`apply_overrides` keys) on top of the shared config.
        router_pilot: the router pilot's record (v3), for the report.
        levers: the learning-speed levers' record (v3), for the report.
    """

    name: str
    records: Path
    reused: Path | None = None
    rerun: tuple[str, ...] = ()
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    router_pilot: dict | None = None
    levers: dict | None = None

    def record_file(self, run) -> Path:
        """The record of `run`: this protocol's own, or the reused one for a method it does not re-run."""
        own = self.records / f"{run.name}.json"
        if self.reused is None or run.method in self.rerun or own.is_file():
            return own
        return self.reused / f"{run.name}.json"

    def overrides(self, run) -> dict[str, Any]:
        return dict(self.method_overrides.get(run.method, {}))


def v2(records: Path = V2_RECORDS) -> Protocol:
    return Protocol("v2", Path(records))


def v3(records: Path = V3_RECORDS, pilot_file: Path | None = None, require_choice: bool = True,
       levers_file: Path | None = None) -> Protocol:  # fmt: skip
    """Protocol v3: the router pilot's chosen recipe for every MTU run, and min-SNR-gamma for every trained run
    when the levers adopted it (an error until both have decided: docs/reproduction.md, Protocol v3)."""
    from mtu.reproduce.router_pilot import CANDIDATES, RECORD_FILE, SHARED

    path = Path(pilot_file or RECORD_FILE)
    pilot = json.loads(path.read_text()) if path.is_file() else None
    name = ((pilot or {}).get("choice") or {}).get("recipe")
    if name is None and require_choice:
        raise ValueError(
            f"protocol v3 needs the router pilot's choice and {path} has none yet: run "
            "`mtu reproduce --router-pilot` until every candidate has finished (docs/reproduction.md, Protocol v3)"
        )
    levers_path = Path(levers_file or lever_runs.RECORD_FILE)
    levers = json.loads(levers_path.read_text()) if levers_path.is_file() else None
    adopted = (levers or {}).get("snr_adopted")
    if adopted is None and require_choice:
        raise ValueError(
            f"protocol v3 needs the levers' min-SNR verdict and {levers_path} has none yet: run "
            "`python -m mtu.reproduce.levers` until every run has reached S (docs/reproduction.md, Protocol v3)"
        )
    recipe = next((r for r in CANDIDATES if r.name == name), None)
    loss = dict(lever_runs.SNR5.extra) if adopted else {}
    overrides = {"mtu": {**SHARED, **(recipe.overrides if recipe else {}), **loss}}
    # A shared-recipe change re-runs every trained method (the same loss for all); else only the MTU runs.
    rerun = tuple(Method) if adopted else RERUN_IN_V3
    overrides |= {method: loss for method in rerun if method not in overrides and loss}
    return Protocol("v3", Path(records), V2_RECORDS, rerun, overrides, pilot, levers)


PROTOCOLS = {"v2": v2, "v3": v3}
