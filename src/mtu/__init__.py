"""mtu: Multi-Task Upcycling of pre-trained text-to-image diffusion models.

>>> import mtu
>>> model = mtu.upcycle(unet, mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=4))
>>> noise_pred = model(latents, t, text_embeddings, task="edit").sample
"""

from mtu.config import BUILTIN_TASKS, MTUConfig, TaskSpec
from mtu.utils.lazy import lazy_exports
from mtu.version import __version__

# Imported on first use: they import torch and diffusers, which `mtu --help` should not wait for.
_LAZY = {
    "MTUModel": "mtu.model",
    "concat_task_inputs": "mtu.model",
    "load": "mtu.loading",
    "tune_allocator": "mtu.utils.runtime",
    "upcycle": "mtu.upcycling",
}

__all__ = ["__version__", "BUILTIN_TASKS", "MTUConfig", "TaskSpec", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
