"""Crash-safe training checkpoints: safetensors + JSON only (no pickle), each folder appearing atomically.

A checkpoint is a folder ``<run>/checkpoints/<n>-<stage>-<step>`` holding ``tensors.safetensors`` (model, EMA,
optimizer moments and RNG state, by prefixed key) and ``state.json`` (step, optimizer hyper-parameters, data RNG
state, metrics). It is written under a dot name and renamed into place (`mtu.utils.checkpoints`), so a reader or
a resumed run sees either a complete checkpoint or none. We do not use accelerate's ``save_state``: it pickles RNG
states and writes in place, so a kill mid-save leaves a half-written checkpoint behind. The optimizer is split
into tensors and JSON by `mtu.utils.safe_state`.

The verbs are `mtu train`'s (`mtu.training.checkpoint`): `save_checkpoint(run_dir, stage, keep)`,
`load_checkpoint(checkpoint, stage)`, `list_checkpoints(run_dir)`, `latest_checkpoint(run_dir)`; here the state
is a `mtu.pretrain.loop.Stage`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from mtu.utils import checkpoints
from mtu.utils.tensor_files import save_tensors

TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
STAGES = ("vae", "unet")


def checkpoint_name(stage: str, step: int) -> str:
    """Names sort in training order: stage index first, then the zero-padded step."""
    return f"{STAGES.index(stage)}-{stage}-{step:07d}"


def _is_checkpoint(path: Path) -> bool:
    return "." not in path.name and (path / STATE_FILE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of the run in `run_dir`, oldest first (names sort in training order)."""
    return checkpoints.list_checkpoints(run_dir, _is_checkpoint)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of the run in `run_dir` (of either stage), None when it has none yet."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, stage, keep: int = 2) -> Path:
    """Checkpoint `stage` (a `mtu.pretrain.loop.Stage`) at its step into `run_dir`, atomically; keep only the newest
    `keep` checkpoints (by name order)."""
    checkpoints.clear_leftovers(run_dir)
    temp = checkpoints.temp_folder(run_dir, checkpoint_name(stage.name, stage.step))
    temp.mkdir()
    save_tensors(temp / TENSORS_FILE, stage.tensors())
    (temp / STATE_FILE).write_text(json.dumps(stage.state(), indent=1) + "\n")
    return checkpoints.publish_checkpoint(temp, keep, _is_checkpoint)


def load_checkpoint(checkpoint: Path, stage) -> None:
    """Restore `stage` (a `mtu.pretrain.loop.Stage`) from `checkpoint`; ValueError for another stage's."""
    tensors, state = load_file(checkpoint / TENSORS_FILE), json.loads((checkpoint / STATE_FILE).read_text())
    if state["stage"] != stage.name:
        raise ValueError(f"checkpoint {checkpoint} belongs to stage {state['stage']!r}, not {stage.name!r}")
    stage.load_state(tensors, state)


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
