"""kill -9 during training, checkpoint writes included: every resume works and the result is unchanged.

The small version of `python -m benchmarks.kill_resume` (10 kills, 40 steps; docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.kill_resume import kill_and_resume, report
from mtu.training import checkpoint
from mtu.utils import outputs


@pytest.mark.slow  # four `mtu train` start-ups: ~45 s on 2 idle cores, more on a busy machine
def test_three_kills_resume_to_the_uninterrupted_weights(tiny_model, tmp_path):
    result = kill_and_resume(tmp_path, kills=3, steps=8, seed=1, model=tiny_model, reference_beside=True)
    summary = report(result, 8)
    assert len(result["kills"]) == 3, summary
    assert result["kills"][0].moment == "checkpoint write", summary
    assert result["kills"][0].writing, summary  # a temp folder, or the oldest checkpoint half deleted
    assert not result["problems"], summary
    assert result["finished"] and result["identical"], summary


def test_a_checkpoint_deleted_halfway_is_not_listed(tmp_path, monkeypatch):
    for step in (2, 4):
        folder = tmp_path / "checkpoints" / checkpoint.checkpoint_name(step)
        (folder / "model").mkdir(parents=True)
        (folder / "state.json").write_text("{}")

    def killed_halfway(path, *args, **kwargs):
        (Path(path) / "state.json").unlink()
        raise KeyboardInterrupt  # stands for the kill: the rest of the folder stays

    monkeypatch.setattr(outputs.shutil, "rmtree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        outputs.remove_folder(tmp_path / "checkpoints" / "step-00000002")
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-00000004"]
    (left,) = (tmp_path / "checkpoints").glob(".step-00000002.*")  # cleared by the next save
    assert (left / "model").is_dir()
