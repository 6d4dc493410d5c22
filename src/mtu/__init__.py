"""mtu: Multi-Task Upcycling of pre-trained text-to-image diffusion models.

    >>> import mtu
    >>> model = mtu.upcycle(unet, mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=4))
    >>> noise_pred = model(latents, t, text_embeddings, task="edit").sample
"""

__version__ = "0.1.0"

from mtu.config import BUILTIN_TASKS, MTUConfig, TaskSpec
from mtu.model import MTUModel, concat_task_inputs
from mtu.upcycle import load, upcycle

__all__ = [
    "BUILTIN_TASKS",
    "MTUConfig",
    "MTUModel",
    "TaskSpec",
    "concat_task_inputs",
    "load",
    "upcycle",
]
