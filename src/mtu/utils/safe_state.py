"""Optimizer state as safetensors + JSON, so checkpoints hold no pickle (shared by `pretrain` and `training`).

`torch.optim.Optimizer.state_dict()` mixes tensors (moments, step counts) with plain values (param
groups); `torch.save` would pickle both, and unpickling a planted file runs code. Splitting them lets
the tensors go to a safetensors file and the param groups to JSON.
"""

from __future__ import annotations

import torch


def optimizer_to_flat(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Split `optimizer.state_dict()` into tensors keyed ``optimizer.<param index>.<name>`` and JSON groups."""
    tensors = {
        f"optimizer.{index}.{name}": value
        for index, param_state in state_dict["state"].items()
        for name, value in param_state.items()
    }
    return tensors, state_dict["param_groups"]


def optimizer_from_flat(tensors: dict[str, torch.Tensor], param_groups: list[dict]) -> dict:
    """Inverse of `optimizer_to_flat` (keys without the ``optimizer.`` prefix are ignored)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": param_groups}
