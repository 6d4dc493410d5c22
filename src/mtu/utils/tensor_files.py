"""The one writer of tensor files: every safetensors file mtu saves goes through `save_tensors`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from mtu.utils.outputs import write_file_atomic


def save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write `tensors` as a safetensors file at `path`: detached, on the CPU, contiguous (what safetensors
    stores), through a temp file renamed into place, so readers see the old file or the whole new one."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    return write_file_atomic(path, lambda temp: save_file(state, str(temp), metadata=metadata))
