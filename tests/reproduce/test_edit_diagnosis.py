"""The edit diagnosis reads the kind of every edit and scores exact targets as right, copies as wrong."""

from __future__ import annotations

from mtu.data.shapes.tasks import EDIT_KINDS, VALIDATION_SEED, evaluation_set
from mtu.reproduce.edit_diagnosis import by_kind, edit_kind


def test_every_edit_kind_is_recognised_and_scored():
    examples = evaluation_set("edit", 32, VALIDATION_SEED)
    kinds = {edit_kind(e) for e in examples}
    assert kinds == set(EDIT_KINDS)
    exact = by_kind([e.target for e in examples], examples)
    assert all(row["all_correct"] == 1.0 for row in exact.values() if row["examples"])
    copied = by_kind([e.image for e in examples], examples)
    assert all(row["all_correct"] == 0.0 for row in copied.values() if row["examples"])
    assert copied["recolor"]["color"] < 1.0 and copied["background"]["background"] == 0.0
    assert sum(row["examples"] for row in exact.values()) == 32
