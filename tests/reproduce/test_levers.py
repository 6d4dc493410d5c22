"""The learning-speed levers' pre-registered rule and run table (mtu.reproduce.levers)."""

from __future__ import annotations

import pytest

from mtu.reproduce.levers import MARGIN_POINTS, RUNS, S, run_name, snr_adopted


def _runs(edit_v2, edit_snr, remove_v2, remove_snr):
    def curve(value):
        return {"curve": {str(S): {"psnr": 20.0, "all_correct": value}}}

    return {"edit-v2": curve(edit_v2), "edit-snr5": curve(edit_snr), "remove-v2": curve(remove_v2),
            "remove-snr5": curve(remove_snr)}  # fmt: skip


@pytest.mark.parametrize(
    ("scores", "adopted"),
    [
        ((0.10, 0.10 + MARGIN_POINTS, 0.50, 0.50), True),  # edit better by the margin, remove the same
        ((0.10, 0.30, 0.50, 0.50 - MARGIN_POINTS), False),  # edit much better, remove worse by the margin
        ((0.10, 0.12, 0.50, 0.52), False),  # better on both, but within the margin
        ((0.10, 0.10, 0.50, 0.60), True),  # remove better
    ],
)
def test_snr_is_adopted_only_by_the_pre_registered_rule(scores, adopted):
    assert snr_adopted(_runs(*scores)) is adopted


def test_no_verdict_before_every_run_it_reads_has_its_point_at_s():
    runs = _runs(0.1, 0.5, 0.5, 0.5)
    del runs["remove-snr5"]["curve"][str(S)]
    assert snr_adopted(runs) is None


def test_levers_change_one_thing_each_from_v2():
    by_name = {run_name(run): run.setting.overrides() for run, _ in RUNS}
    v2 = by_name["edit-v2"]
    assert by_name["edit-snr5"] == {**v2, "train.snr_gamma": 5.0}
    assert by_name["edit-full"] == {**v2, "method": "full"}
    assert [name for name in by_name][:1] == ["edit-full"]  # declared order: the "at all" question first


def test_a_new_machine_keeps_the_records_points_and_trains_past_them(tmp_path):
    import json

    from mtu.reproduce.levers import _seed_curves

    record = tmp_path / "levers.json"
    curve = {"task": "edit", "setting": "full", "curve": {"2000": {"all_correct": 0.1}}, "seconds": 5.0}
    record.write_text(json.dumps({"runs": {"edit-full": curve, "edit-v2": {**curve, "setting": "v2"}}}))
    kept = tmp_path / "out" / "edit-v2" / "curve.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({**curve, "curve": {"2000": {}, "4000": {}}}))  # this machine's own, further on
    runs = _seed_curves(record, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "edit-full" / "curve.json").read_text()) == curve
    assert sorted(json.loads(kept.read_text())["curve"]) == ["2000", "4000"]
    assert set(runs) == {"edit-full", "edit-v2"} and _seed_curves(tmp_path / "none.json", tmp_path / "x") == {}
