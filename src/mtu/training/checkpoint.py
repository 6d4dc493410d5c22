"""Checkpoints that appear whole or not at all: accelerate's `save_state` into a temp folder, then a rename.

A checkpoint ``<output_dir>/checkpoints/step-00000100`` holds what `Accelerator.save_state` writes
(optimizer, LR scheduler, RNG states, the registered `Progress` and EMA) and ``model/``: the trainable
weights written by `mtu.training.methods.save_trained` (safetensors; the frozen base is not copied).
Every process writes into ``.step-00000100.tmp``; once all are done the main process renames it. A
crash mid-save leaves only a ``.tmp`` folder, which is never resumed from and is cleared on the next save.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CHECKPOINTS = "checkpoints"
PREFIX = "step-"
CONFIG_FILE = "train_config.yaml"


@dataclass
class Progress:
    """Training progress saved with every checkpoint (registered with `register_for_checkpointing`).

    Attributes:
        step: optimizer steps taken.
        data_seed: the seed of the data stream (the config's seed, or one drawn at the start of the run).
        skipped: unreadable samples skipped so far, all processes together.
    """

    step: int = 0
    data_seed: int = 0
    skipped: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders start with a dot and are ignored)."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    named = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(p for p in named if p.is_dir())


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name[len(PREFIX) :])


def find_checkpoint(resume: str, output_dir: str | Path) -> Path | None:
    """The checkpoint `--resume` names: "latest" (None when the run has none yet), a run folder, or a checkpoint.

    Raises:
        FileNotFoundError: a path that is neither a checkpoint nor a run folder with checkpoints.
    """
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume).expanduser()
    if (path / "model").is_dir() and path.name.startswith(PREFIX):
        return path
    found = list_checkpoints(path)
    if found:
        return found[-1]
    raise FileNotFoundError(
        f"--resume {resume}: not a checkpoint folder ({PREFIX}NNNNNNNN with model/ inside) nor a run folder with "
        f"{CHECKPOINTS}/; use --resume latest to continue the run in output_dir"
    )


def save_checkpoint(accelerator, output_dir: str | Path, step: int, keep: int, config_text: str) -> Path:
    """`accelerator.save_state` for `step`, atomically, then delete all but the newest `keep` checkpoints.

    Every process must call this (accelerate saves per-process RNG states); only the main one renames.
    """
    root = Path(output_dir) / CHECKPOINTS
    final = root / checkpoint_name(step)
    temp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if temp.exists():
            shutil.rmtree(temp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temp / CONFIG_FILE).write_text(config_text)
        _replace_dir(temp, final)
        for stale in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    return final


def _replace_dir(source: Path, destination: Path) -> None:
    """Rename `source` to `destination`; an existing `destination` (same step saved again) is swapped out first."""
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(destination, old)
        os.replace(source, destination)
        shutil.rmtree(old)
    else:
        os.replace(source, destination)
