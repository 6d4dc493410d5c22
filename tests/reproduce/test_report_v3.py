"""Protocol v3's report sections: the router pilot's verdicts and choice, the levers' points and verdict."""

from __future__ import annotations

from types import SimpleNamespace

from mtu.reproduce.report_v3 import levers_section, router_pilot_section


def _levers(adopted):
    kinds = {"move": {"examples": 3, "all_correct": 0.25, "psnr": 21.0}}
    point = {"psnr": 20.5, "all_correct": 0.125, "by_kind": kinds}
    run = {"task": "edit", "setting": "snr5", "curve": {"2000": point}}
    remove = {"task": "remove", "setting": "v2", "curve": {"2000": {"psnr": 30.0, "all_correct": 0.5}}}
    baselines = {"edit": {"psnr": 16.9, "all_correct": 0.0}, "remove": {"psnr": 20.6, "all_correct": 0.0}}
    return {"runs": {"edit-snr5": run, "remove-v2": remove}, "baselines": baselines, "snr_adopted": adopted}


def test_levers_section_lists_every_point_its_kinds_and_the_verdict(tmp_path):
    lines = levers_section({"protocol": SimpleNamespace(levers=_levers(False))}, tmp_path)
    text = "\n".join(lines)
    assert "| `edit-snr5` | 2,000 | 20.50 | 0.125 | move 0.25 |" in text
    assert "| `remove-v2` | 2,000 | 30.00 | 0.500 | - |" in text
    assert "not adopted: v3 keeps v2's loss" in text and (tmp_path / "levers.png").is_file()
    assert "adopted: every trained method" in "\n".join(
        levers_section({"protocol": SimpleNamespace(levers=_levers(True))}, tmp_path)
    )
    assert levers_section({"protocol": SimpleNamespace(levers=None)}, tmp_path) == []


def test_router_pilot_section_marks_each_finished_candidate_and_the_choice():
    verdicts = {"paper-1x": {"finished": True, "a_learned_tasks_pass": False, "b_t2i_kept": False,
                             "c_routing_healthy": False}, "nobias": {"finished": False}}  # fmt: skip
    pilot = {"verdicts": verdicts, "choice": {"recipe": "paper-1x", "reason": "routing health failed"}}
    text = "\n".join(router_pilot_section({"protocol": SimpleNamespace(router_pilot=pilot)}))
    assert "| `paper-1x` | no | no | no |" in text and "`nobias`" not in text
    assert "Chosen: `paper-1x` (routing health failed)." in text
