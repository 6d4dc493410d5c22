"""The command-line fuzzer (`tests/fuzz/fuzz_cli.py`, issue 31) on a small time budget.

MTU_FUZZ_SECONDS sets the budget (default 24 s), MTU_FUZZ_SEED the seed (default: a new one each run, named in
the failure message so that `python -m tests.fuzz.fuzz_cli --seed N` repeats it).
"""

from __future__ import annotations

import os
import random

from tests.fuzz.fuzz_cli import fuzz


def test_bad_numbers_and_damaged_folders_get_one_line_answers(tmp_path):
    seconds = float(os.environ.get("MTU_FUZZ_SECONDS", "24"))
    seed = int(os.environ.get("MTU_FUZZ_SEED", random.randrange(2**32)))
    report = fuzz(seconds, seed, tmp_path)
    assert report.reached and report.folders, report.summary(seed)  # both halves really ran
    assert not report.failures, report.summary(seed) + "\n" + "\n".join(report.failures[:10])
