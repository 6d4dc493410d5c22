"""Protocol v2 statistics: the paired bootstrap, the claim verdicts, and the router analysis."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mtu.reproduce.routing import js_divergence, router_figure, router_summary
from mtu.reproduce.stats import (
    MARGINS,
    T2I_KEPT_MARGIN,
    compare,
    paired_bootstrap,
    verdict,
)


def _width(interval: dict) -> float:
    return interval["high"] - interval["low"]


def _noisy(rng, seeds: int, examples: int, shift: float = 0.0, spread: float = 1.0) -> np.ndarray:
    return shift + spread * rng.standard_normal((seeds, examples))


# --- paired bootstrap ------------------------------------------------------------------------------


def test_interval_shrinks_with_more_examples():
    rng = np.random.default_rng(1)
    few = paired_bootstrap(_noisy(rng, 3, 64, 1.0), _noisy(rng, 3, 64))
    many = paired_bootstrap(_noisy(rng, 3, 1024, 1.0), _noisy(rng, 3, 1024))
    assert _width(many) < 0.5 * _width(few)  # 16x the examples: about a quarter of the width


def test_width_matches_the_normal_theory():
    # One seed, paired differences of sd 1: the 95% interval of the mean is about 2 * 1.96 / sqrt(n) wide.
    rng = np.random.default_rng(2)
    b = _noisy(rng, 1, 400)
    result = paired_bootstrap(b + _noisy(rng, 1, 400), b)
    assert _width(result) == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.2)
    assert result["low"] < result["difference"] < result["high"]


def test_identical_inputs_are_on_par():
    scores = _noisy(np.random.default_rng(3), 3, 256, 25.0, 4.0)
    result = paired_bootstrap(scores, scores.copy())
    assert result["low"] <= 0.0 <= result["high"] and result["difference"] == 0.0
    assert verdict(result, MARGINS["psnr"], "beats") == "on par"


def test_nearly_identical_inputs_are_on_par():
    rng = np.random.default_rng(4)
    a = _noisy(rng, 3, 256, 25.0, 4.0)
    result = paired_bootstrap(a, a + _noisy(rng, 3, 256, 0.0, 0.2))
    assert result["low"] < 0.0 < result["high"]
    assert verdict(result, MARGINS["psnr"], "beats") == "on par"


def test_clear_gain_holds_and_clear_loss_does_not():
    rng = np.random.default_rng(5)
    base = _noisy(rng, 3, 256, 25.0, 3.0)
    better = base + _noisy(rng, 3, 256, 1.0, 0.3)
    worse = base + _noisy(rng, 3, 256, -1.0, 0.3)
    assert verdict(paired_bootstrap(better, base), MARGINS["psnr"], "beats") == "holds"
    assert verdict(paired_bootstrap(worse, base), MARGINS["psnr"], "beats") == "does not hold"


def test_pairing_removes_the_shared_example_variance():
    # Example difficulty varies a lot (sd 5 dB) but hits both methods alike; A is 0.3 dB better on each.
    rng = np.random.default_rng(6)
    difficulty = 5.0 * rng.standard_normal(256)
    a = difficulty + _noisy(rng, 3, 256, 0.3, 0.2)
    b = difficulty + _noisy(rng, 3, 256, 0.0, 0.2)
    paired = paired_bootstrap(a, b)
    unpaired = paired_bootstrap(a, b[:, rng.permutation(256)])  # same scores, example pairing broken
    assert _width(paired) < 0.1 < _width(unpaired) / 5
    assert paired["low"] > 0 and unpaired["low"] < 0 < unpaired["high"]


def test_same_seed_reproduces_and_another_seed_differs():
    rng = np.random.default_rng(7)
    a, b = _noisy(rng, 3, 256, 0.2), _noisy(rng, 3, 256)
    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11)["low"] != paired_bootstrap(a, b, seed=12)["low"]


def test_misaligned_seeds_raise_unless_unpaired_is_explicit():
    # Issue 33: a seed missing on one side used to switch silently to unpaired resampling.
    rng = np.random.default_rng(8)
    difficulty = 5.0 * rng.standard_normal(256)
    a = difficulty + _noisy(rng, 3, 256, 1.0, 0.3)
    b = difficulty + _noisy(rng, 2, 256, 0.0, 0.3)
    with pytest.raises(ValueError, match="a has 3 seeds but b has 2: .*paired=False"):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="3 seeds but b has 2"):
        compare([{"psnr": row} for row in a], [{"psnr": row} for row in b], "psnr")
    result = paired_bootstrap(a, b, paired=False)  # examples still paired, seeds resampled on their own
    assert result["paired"] is False and result["difference"] == pytest.approx(a.mean() - b.mean())
    assert 0.5 < result["low"] < result["high"] < 1.5
    unpaired = compare([{"psnr": row} for row in a], [{"psnr": row} for row in b], "psnr", paired=False)
    assert unpaired["paired"] is False and unpaired["per_seed"] is None  # no seed of b goes with seed s of a


def test_a_one_row_reference_pairs_with_every_seed():
    # A method without training seeds (a no-learning baseline): paired and unpaired resampling agree.
    rng = np.random.default_rng(13)
    a, reference = _noisy(rng, 3, 256, 1.0), _noisy(rng, 1, 256)
    paired, unpaired = paired_bootstrap(a, reference), paired_bootstrap(a, reference, paired=False)
    assert paired["paired"] and paired["low"] == pytest.approx(unpaired["low"])
    assert paired["high"] == pytest.approx(unpaired["high"])
    result = compare([{"psnr": row} for row in a], [{"psnr": reference[0]}], "psnr")
    assert result["per_seed"] == pytest.approx((a.mean(axis=1) - reference.mean()).tolist())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="examples"):
        paired_bootstrap(np.zeros((3, 256)), np.zeros((3, 255)))
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap(np.zeros((0, 256)), np.zeros((3, 256)))
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap(np.full((1, 4), np.inf), np.zeros((1, 4)))


def test_bootstrap_is_fast():
    rng = np.random.default_rng(9)
    a, b = _noisy(rng, 3, 256), _noisy(rng, 3, 256)
    start = time.perf_counter()
    paired_bootstrap(a, b)  # RESAMPLES: the report computes a few dozen of these
    assert time.perf_counter() - start < 1.0


# --- verdicts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interval, expected",
    [
        ((1e-9, 2.0), "holds"),
        ((0.1, 0.3), "holds"),  # excludes 0 on the paper's side, even inside the margin
        ((0.0, 0.3), "on par"),
        ((-0.5, 0.5), "on par"),
        ((-0.6, 0.4), "inconclusive"),
        ((-0.2, 0.9), "inconclusive"),
        ((-2.0, -0.5), "inconclusive"),
        ((-2.0, -0.51), "does not hold"),
    ],
)
def test_beats_rule_edges(interval, expected):
    assert verdict(interval, 0.5, "beats") == expected


@pytest.mark.parametrize(
    "interval, expected",
    [
        ((-0.02, 0.05), "holds"),
        ((0.01, 0.2), "holds"),
        ((-0.02, -0.01), "holds"),
        ((-0.0201, 0.05), "inconclusive"),
        ((-0.1, -0.02), "inconclusive"),
        ((-0.1, -0.0201), "does not hold"),
    ],
)
def test_kept_rule_edges(interval, expected):
    assert verdict(interval, T2I_KEPT_MARGIN, "kept") == expected


def test_verdict_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        verdict((0.0, 1.0), 0.5, "wins")
    with pytest.raises(ValueError, match="above"):
        verdict({"low": 1.0, "high": 0.0}, 0.5, "beats")


def test_compare_on_stored_per_example_scores():
    rng = np.random.default_rng(10)
    correct_b = rng.random((3, 256)) < 0.6
    correct_a = correct_b | (rng.random((3, 256)) < 0.5)  # A fixes about half of B's failures
    runs_a = [{"all_correct": row.astype(float).tolist(), "psnr": [20.0] * 256} for row in correct_a]
    runs_b = [{"all_correct": row.astype(float).tolist(), "psnr": [20.0] * 256} for row in correct_b]
    result = compare(runs_a, runs_b, "all_correct", "beats")
    assert result["verdict"] == "holds" and result["margin"] == MARGINS["all_correct"]
    assert (result["seeds_a"], result["seeds_b"], result["examples"]) == (3, 3, 256)
    kept = compare(runs_a, runs_b, "all_correct", "kept", margin=T2I_KEPT_MARGIN)
    assert kept["verdict"] == "holds" and kept["margin"] == T2I_KEPT_MARGIN
    assert compare(runs_a, runs_b, "psnr")["verdict"] == "on par"


def test_compare_rejects_mismatched_or_missing_scores():
    with pytest.raises(ValueError, match="different example counts"):
        compare([{"psnr": [1.0, 2.0]}, {"psnr": [1.0]}], [{"psnr": [1.0, 2.0]}], "psnr")
    with pytest.raises(ValueError, match="no runs"):
        compare([], [{"psnr": [1.0]}], "psnr")
    with pytest.raises(ValueError, match="no per-example"):
        compare([{"psnr": [1.0]}], [{"ssim": [1.0]}], "psnr")
    with pytest.raises(ValueError, match="no margin"):
        compare([{"ssim": [1.0]}], [{"ssim": [1.0]}], "ssim")


# --- router analysis -------------------------------------------------------------------------------

TASKS = ["t2i", "edit", "sr"]
LAYERS = [
    "down_blocks.0.attentions.0.transformer_blocks.0.ff",
    "mid_block.attentions.0.transformer_blocks.0.ff",
    "up_blocks.1.attentions.2.transformer_blocks.0.ff",
]


def _one_hot(experts_per_layer: list[list[int]], num_experts: int, top: float = 1.0) -> dict[str, np.ndarray]:
    """{layer: rows}, task t of layer l sending `top` of its weight to expert experts_per_layer[l][t]."""
    weights = {}
    for layer, experts in zip(LAYERS, experts_per_layer):
        rows = np.full((len(experts), num_experts), (1.0 - top) / (num_experts - 1))
        rows[np.arange(len(experts)), experts] = top
        weights[layer] = rows
    return weights


def test_uniform_routing_does_not_specialise():
    uniform = {layer: np.full((3, 4), 0.25) for layer in LAYERS}
    summary = router_summary([uniform, uniform], TASKS)
    assert all(js == pytest.approx(0.0, abs=1e-12) for seed in summary["seeds"] for js in seed["js"])
    assert summary["specialised_cells"] == [0, 0]
    assert summary["verdict"] == "does not specialise at this budget"


def test_js_reaches_its_bounds():
    assert js_divergence(np.eye(4)[:3]) == pytest.approx(math.log2(3))  # T = 3 tasks on distinct experts
    assert js_divergence(np.eye(2)[[0, 0, 1, 1]]) == pytest.approx(math.log2(2))  # T = 4 > N = 2: log2 N
    assert js_divergence(np.eye(4)[[1, 1, 1]]) == pytest.approx(0.0)  # all tasks on one expert


def test_distinct_one_hot_experts_specialise_when_seeds_agree():
    seed = _one_hot([[0, 1, 2], [3, 2, 1], [1, 0, 3]], 4)
    summary = router_summary([seed, {k: v.tolist() for k, v in seed.items()}], TASKS)  # stored as lists too
    assert all(js == pytest.approx(math.log2(3)) for js in summary["seeds"][0]["js"])
    assert summary["seeds"][0]["argmax"][1] == [3, 2, 1]
    assert summary["specialised_cells"] == [9, 9]
    assert summary["agreement"] == {"cells": 9, "agreeing": 9, "fraction": 1.0}
    assert summary["verdict"] == "specialises"


def test_disagreeing_seeds_are_inconclusive():
    first = _one_hot([[0, 1, 2], [3, 2, 1], [1, 0, 3]], 4, top=0.7)
    second = _one_hot([[0, 1, 2], [1, 2, 3], [3, 2, 1]], 4, top=0.7)  # 4 of 9 cells agree
    summary = router_summary([first, second], TASKS)
    assert summary["agreement"]["fraction"] == pytest.approx(4 / 9)
    assert summary["verdict"] == "inconclusive"


def test_agreement_counts_only_cells_specialised_in_every_seed():
    first = _one_hot([[0, 1, 2], [3, 2, 1], [1, 0, 3]], 4, top=0.9)
    second = _one_hot([[0, 1, 2], [1, 2, 3], [3, 2, 1]], 4, top=0.9)
    second[LAYERS[1]] = np.full((3, 4), 0.25)  # the disagreeing layers no longer specialise in seed 1
    second[LAYERS[2]] = np.full((3, 4), 0.25)
    summary = router_summary([first, second], TASKS)
    assert summary["agreement"] == {"cells": 3, "agreeing": 3, "fraction": 1.0}
    assert summary["verdict"] == "specialises"


def test_one_seed_or_no_shared_cell_is_inconclusive():
    specialised = _one_hot([[0, 1, 2]] * 3, 4)
    assert router_summary([specialised], TASKS)["verdict"] == "inconclusive"
    uniform = {layer: np.full((3, 4), 0.25) for layer in LAYERS}
    summary = router_summary([specialised, uniform], TASKS)
    assert summary["agreement"]["fraction"] is None and summary["verdict"] == "inconclusive"


def test_router_summary_rejects_malformed_weights():
    with pytest.raises(ValueError, match="tasks"):
        router_summary([{LAYERS[0]: np.full((2, 4), 0.25)}], TASKS)
    with pytest.raises(ValueError, match="softmax"):
        router_summary([{LAYERS[0]: np.ones((3, 4))}], TASKS)
    with pytest.raises(ValueError, match="layers"):
        router_summary([_one_hot([[0, 1, 2]] * 3, 4), {LAYERS[0]: np.full((3, 4), 0.25)}], TASKS)


def test_router_figure_is_written(tmp_path):
    summary = router_summary([_one_hot([[0, 1, 2]] * 3, 4, 0.8), _one_hot([[0, 1, 3]] * 3, 4, 0.6)], TASKS)
    path = router_figure(summary, tmp_path / "figures" / "router.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_lists_per_layer_divergence_and_counts():
    from mtu.reproduce.plan import Run
    from mtu.reproduce.report import _router_table

    same = _one_hot([[2, 2, 2]] * 3, 4, 0.9)  # every task on expert 2: specialised cells, zero divergence
    distinct = _one_hot([[0, 1, 2]] * 3, 4, 0.9)
    summary = router_summary([same, distinct], TASKS)
    summary["seeds"][0]["js"][0] = -1e-17  # what float rounding leaves of 0
    runs = [Run("mtu", tuple(TASKS), 4, seed) for seed in (0, 1)]
    lines = _router_table(summary, runs)
    rows = [line for line in lines if line.startswith("| ") and "layer" not in line]
    assert len(rows) == len(LAYERS)
    cells = rows[0].strip("| ").split(" | ")
    assert cells[1] == "0.000" and float(cells[2]) == pytest.approx(js_divergence(distinct[LAYERS[0]]), abs=1e-3)
    assert cells[3:] == ["3/3", "3/3"]
    assert "9 of 9 (seed 0), 9 of 9 (seed 1)" in lines[0] and "of the 9 such in every seed, 3 pick" in lines[0]
