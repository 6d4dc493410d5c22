"""Protocol v3's report sections: the router pilot's verdicts and choice, the levers' points and verdict."""

from __future__ import annotations

import json
from types import SimpleNamespace

from mtu.reproduce.report_v3 import levers_section, not_learned_section, router_pilot_section


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


def _learned(task, all_correct, psnr=None, baseline=None):
    from mtu.reproduce.claims import Learned

    return Learned(task, psnr, all_correct, baseline)


def test_not_learned_section_gives_each_failed_task_its_curves_checks_and_fastest_route(tmp_path):
    levers = _levers(False)
    levers["protocol"] = {"S": 2000, "levers": {"v2": {"lr": 1}, "snr5": {"lr": 1, "snr_gamma": 5}}}
    curve = {"2000": {"all_correct": 0.1}, "4000": {"all_correct": 0.3}}
    levers["runs"]["edit-full"] = {"task": "edit", "setting": "v2", "curve": curve}
    levers["runs"]["remove-v2"]["curve"] = {"2000": {"all_correct": 0.45}}
    diagnosis = {"model": "m", "samples": 4, "vae_ceiling": {"all_correct": 1.0, "psnr": 40.0},
                 "settings": [{"guidance": 1.0, "image_guidance": 1.0, "by_kind": {
                     "move": {"examples": 1, "all_correct": 0.0}, "recolor": {"examples": 3, "all_correct": 0.5},
                     "reshape": {"examples": 0}}}]}  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(diagnosis))
    learned = {"t2i": _learned("t2i", 0.98), "edit": _learned("edit", 0.07, 19.4, 17.5),
               "remove": _learned("remove", 0.4, 29.0, 20.3)}  # fmt: skip
    pilot_curve = {"500": {"all_correct": 0.2}, "1000": {"all_correct": 0.1}}
    pilot = {"choice": {"setting": "x10"}, "protocol": {"eval_samples": 128},
             "runs": {"pilot-edit-x10": {"task": "edit", "setting": "x10", "curve": pilot_curve},
                      "pilot-edit-other": {"task": "edit", "setting": "other", "curve": pilot_curve}}}  # fmt: skip
    context = {"protocol": SimpleNamespace(levers=levers), "pilot": pilot}
    text = "\n".join(not_learned_section(context, learned, tmp_path / "d.json"))
    # The pilot's curve under its chosen setting only; falling, so it is no route to the bar.
    assert text.count("- v2's pilot") == 1 and "`x10` (128 examples): 0.200 at 500 -> 0.100 at 1,000 steps" in text
    assert "-20.0 points per 1,000 steps; not rising" in text
    assert "**t2i**" not in text and "**edit** (test: all-correct 0.070 (bar 0.5)" in text
    # 0.1 -> 0.3 over 2,000 steps: +10 points per 1,000; the line reaches 0.5 at 6,000 steps.
    assert "`edit-full` (v2's recipe): 0.100 at 2,000 -> 0.300 at 4,000 steps" in text
    assert "+10.0 points per 1,000 steps; the line reaches 0.5 near 6,000 steps" in text
    assert "`edit-snr5` (snr_gamma: 5)" in text and "one point, no slope" in text
    assert "parses all-correct 1.00 (PSNR 40.0 dB)" in text and "all-correct 0.38 at text 1 / image 1" in text
    assert "Fastest measured way towards the bar: `edit-full`, whose line reaches it near 6,000 steps" in text
    assert "**remove**" in text and "No measured curve rises" in text
    levers["runs"]["remove-v2"]["curve"] = {"2000": {"all_correct": 0.55}}
    text = "\n".join(not_learned_section(context, learned, tmp_path / "missing.json"))
    assert "At or above the bar on validation at their last point: `remove-v2`" in text
    assert "VAE round trip" not in text
    assert not_learned_section(context, {"t2i": learned["t2i"]}) == []
    assert not_learned_section({"protocol": SimpleNamespace(levers=None)}, learned) == []
