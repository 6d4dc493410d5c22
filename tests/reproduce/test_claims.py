"""The claims table's comparisons (issue 33): runs paired by seed id, the single-task model of each task,
missing seeds refused by name, the unpaired comparison said so, and what 3 seeds can show."""

from __future__ import annotations

import pytest

from mtu.reproduce import claims
from mtu.reproduce.claims import Learned, judge, single_task, t2i_kept
from mtu.reproduce.plan import CPU_BUDGET, PAPER_TASKS, Run, build_plan
from mtu.reproduce.report import _claims, seeds_note

EXAMPLES = 16


def _scores(psnr: float, correct: int) -> dict:
    """Per-example scores: every example at `psnr`, the first `correct` of them all-correct."""
    return {"psnr": [psnr] * EXAMPLES, "all_correct": [1.0] * correct + [0.0] * (EXAMPLES - correct)}


def _records(tables: dict, skip: tuple[Run, ...] = ()) -> dict:
    """A record per run of the main table and the pairs. Every run scores on every paper task, a
    single-task model too (as if scored on all): only its own task may enter a comparison. MTU scores
    30 + seed dB; a single-task model 29 dB on its own task, 0 dB on the others."""
    records = {}
    for run in tables["main"] + tables["pairs"]:
        if run in skip:
            continue
        if run.method == "single-task":
            per_task = {t: _scores(29.0 if run.tasks == (t,) else 0.0, 8) for t in PAPER_TASKS}
        else:
            per_task = {t: _scores(30.0 + run.seed, 8 + run.seed) for t in PAPER_TASKS}
        records[run] = {"tasks": {t: {"per_example": scores} for t, scores in per_task.items()}}
    return records


def _learned() -> dict[str, Learned]:
    return {t: Learned(t, 30.0, 0.9, None if t == "t2i" else 20.0) for t in PAPER_TASKS}


def _single_task_line(lines: list[str]) -> str:
    return next(line for line in lines if "on par with or better than the single-task models" in line)


@pytest.fixture(scope="module")
def tables() -> dict:
    return build_plan(scope=CPU_BUDGET)


def test_mtu_is_compared_with_one_single_task_run_per_task_and_seed(tables, monkeypatch):
    compared = []

    def spy(records, a, b, task, metric, kind, margin=None, paired=True):
        compared.append((task, [run.name for run in b]))
        return judge(records, a, b, task, metric, kind, margin, paired)

    monkeypatch.setattr(claims, "judge", spy)
    line = _single_task_line(_claims(_records(tables), tables, PAPER_TASKS, _learned()))
    single = [(task, names) for task, names in compared if names and names[0].startswith("single-task")]
    assert {task for task, _ in single} == set(PAPER_TASKS)
    for task, names in single:
        assert names == [f"single-task-n4-{task}-s{seed}" for seed in (0, 1, 2)]
    # MTU seed s (30 + s dB) against the sr model of seed s (29 dB): +1, +2, +3, seed by seed.
    assert "psnr does not hold" not in line and "**sr**: psnr holds (+2.00 [" in line
    assert "per seed 0/1/2: +1.00 / +2.00 / +3.00" in line


def test_a_group_with_two_runs_of_one_seed_is_refused(tables):
    main = tables["main"]
    every_single_task_run = [run for run in main if run.method == "single-task"]  # issue 33's bug
    mtu = claims.group(main, "mtu", PAPER_TASKS)
    with pytest.raises(ValueError, match="one run per seed"):
        judge(_records(tables), mtu, every_single_task_run, "sr", "psnr", "beats")
    assert judge(_records(tables), mtu, single_task(main, "sr"), "sr", "psnr", "beats")["seed_ids"] == [0, 1, 2]


def test_a_missing_seed_refuses_the_comparison_and_names_the_run(tables):
    remove_s2 = Run("single-task", ("remove",), 4, 2)  # remove's single-task model for seeds 0-1 only
    records = _records(tables, skip=(remove_s2,))
    line = _single_task_line(_claims(records, tables, PAPER_TASKS, _learned()))
    remove = line.split("**remove**: ")[1]
    assert remove.startswith("psnr not compared (no scores from `single-task-n4-remove-s2`")
    assert "[" not in remove  # no interval from the two seeds left
    sr = line.split("**sr**: ")[1].split("; **")[0]
    assert "per seed 0/1/2:" in sr  # sr's three seeds are there: compared as usual


def test_pairs_are_compared_with_the_single_task_runs_of_their_seeds(tables):
    lines = _claims(_records(tables), tables, PAPER_TASKS, _learned())
    line = next(line for line in lines if line.startswith("| sr and remove interfere"))
    assert line.count("per seed 0/1:") == 4  # two seeds of the pair model, on sr and remove, two metrics each


def test_t2i_kept_is_unpaired_and_says_so(tables):
    main = tables["main"]
    mtu = claims.group(main, "mtu", PAPER_TASKS)
    line = t2i_kept(_records(tables), mtu, [run for run in main if run.method == "base"])
    assert "unpaired" in line.split(" | ")[0] and "seeds unpaired)" in line
    assert "per seed 0/1/2: " in line  # each MTU seed against the base's one run


def test_the_claims_table_says_what_three_seeds_can_show(tables):
    lines = _claims(_records(tables), tables, PAPER_TASKS, _learned())
    assert lines[-2] == "" and lines[-1] == seeds_note(3)
    assert "1/27 = 3.7%" in seeds_note(3) and "2.5%" in seeds_note(3)
    assert "examples only" in seeds_note(1) and "1/" not in seeds_note(5)
