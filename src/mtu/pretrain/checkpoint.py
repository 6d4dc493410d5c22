"""Crash-safe training checkpoints: safetensors + JSON only (no pickle), each folder appearing atomically.

A checkpoint is a folder ``<root>/<name>`` holding ``tensors.safetensors`` (model, EMA, optimizer moments
and RNG state, by prefixed key) and ``state.json`` (step, optimizer hyper-parameters, data RNG state,
metrics). It is written under ``<name>.tmp`` and renamed into place, so a reader or a resumed run sees
either a complete checkpoint or none. We do not use accelerate's ``save_state``: it pickles RNG states
and writes in place, so a kill mid-save leaves a half-written checkpoint behind. The optimizer is split
into tensors and JSON by `mtu.utils.safe_state`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from mtu.utils.outputs import remove_folder, replace_folder
from mtu.utils.tensor_files import save_tensors

TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"


def save_checkpoint(root: Path, name: str, tensors: dict[str, torch.Tensor], state: dict, keep: int = 2) -> Path:
    """Write checkpoint `root/name` atomically and delete all but the `keep` newest (by name order)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_tensors(tmp / TENSORS_FILE, tensors)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
    final = root / name
    replace_folder(tmp, final)
    for stale in list_checkpoints(root)[:-keep]:
        remove_folder(stale)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (names sort in training order)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and "." not in p.name and (p / STATE_FILE).is_file())


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, state) of checkpoint folder `path`."""
    return load_file(path / TENSORS_FILE), json.loads((path / STATE_FILE).read_text())


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
