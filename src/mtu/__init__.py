"""mtu: Multi-Task Upcycling of pre-trained text-to-image diffusion models.

>>> import mtu
>>> model = mtu.upcycle(unet, mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=4))
>>> noise_pred = model(latents, t, text_embeddings, task="edit").sample
"""

import importlib
import sys
import types

from mtu.config import BUILTIN_TASKS, MTUConfig, TaskSpec
from mtu.version import __version__

# Imported on first use: they import torch and diffusers, which `mtu --help` should not wait for.
_LAZY = {
    "MTUModel": "mtu.model",
    "concat_task_inputs": "mtu.model",
    "load": "mtu.loading",
    "tune_allocator": "mtu.runtime",
    "upcycle": "mtu.upcycle",
}

__all__ = [
    "__version__",
    "BUILTIN_TASKS",
    "MTUConfig",
    "MTUModel",
    "TaskSpec",
    "concat_task_inputs",
    "load",
    "tune_allocator",
    "upcycle",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mtu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps `mtu.upcycle` the function when the submodule `mtu.upcycle` is imported first.

    Importing a submodule sets the package attribute of its name to the module; an eager `from mtu.upcycle
    import upcycle` used to rebind it, and the lazy import must keep doing so.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
