"""Checkpoint folders: the vocabulary `mtu train` (`mtu.training.checkpoint`) and the shapes-base recipe
(`mtu.pretrain.checkpoint`) share, and the mechanics that make a checkpoint appear whole or not at all.

A run folder keeps its checkpoints in ``<run_dir>/checkpoints/<name>``, the names sorting in training order. A
checkpoint is written into ``.<name>.tmp`` and renamed into place; an old one is renamed to a dot name before it
is deleted (`mtu.utils.outputs.remove_folder`). Dot names are never listed, and the next save clears them, so a
kill at any moment leaves no half checkpoint under a listed name. What a checkpoint holds is each module's own
format. Both modules spell the verbs alike:

    save_checkpoint(run_dir, state, keep=2) -> Path   # `state`: what is saved (a training `Run`, a pretrain `Stage`)
    load_checkpoint(checkpoint, state) -> None        # restores `state` in place
    list_checkpoints(run_dir) -> list[Path]           # the complete ones, oldest first
    latest_checkpoint(run_dir) -> Path | None

This module holds what they share: where checkpoints live, listing, the temp folder and publishing it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from mtu.utils.outputs import remove_folder, replace_folder

CHECKPOINTS = "checkpoints"
TEMP_SUFFIX = ".tmp"


def checkpoints_folder(run_dir: str | Path) -> Path:
    """Where the checkpoints of the run in `run_dir` live."""
    return Path(run_dir) / CHECKPOINTS


def list_checkpoints(run_dir: str | Path, is_checkpoint: Callable[[Path], bool]) -> list[Path]:
    """The checkpoint folders of `run_dir` that `is_checkpoint` accepts, oldest first; dot names (a save or a
    delete in progress, or cut short) are never listed."""
    root = checkpoints_folder(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir() and is_checkpoint(p))


def temp_folder(run_dir: str | Path, name: str) -> Path:
    """The folder checkpoint `name` is written into before `publish_checkpoint` renames it."""
    return checkpoints_folder(run_dir) / f".{name}{TEMP_SUFFIX}"


def clear_leftovers(run_dir: str | Path) -> None:
    """Create the checkpoints folder, and delete the dot-named folders a save or delete cut short left in it."""
    root = checkpoints_folder(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.iterdir():
        if leftover.name.startswith(".") and leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)


def publish_checkpoint(temp: Path, keep: int, is_checkpoint: Callable[[Path], bool]) -> Path:
    """Rename the finished `temp` folder (`temp_folder`) into place, then delete all but the `keep` newest
    checkpoints of its run; returns the checkpoint's folder."""
    final = temp.with_name(temp.name[1 : -len(TEMP_SUFFIX)])
    replace_folder(temp, final)
    for stale in list_checkpoints(final.parent.parent, is_checkpoint)[:-keep]:
        remove_folder(stale)  # renamed to a dot name first: no half checkpoint under a listed name
    return final
