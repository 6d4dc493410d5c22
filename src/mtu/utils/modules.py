"""Two mechanics on torch modules that several parts need: swap a submodule by name, count parameters."""

from __future__ import annotations

from torch import nn


def replace_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `root.get_submodule(name)` was, through its parent (`setattr`)."""
    parent, _, attribute = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attribute, module)


def count_parameters(module: nn.Module, trainable: bool = False) -> int:
    """Parameters of `module` (only those that require a gradient with `trainable`)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)
