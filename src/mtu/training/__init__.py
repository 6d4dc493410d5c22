"""Multi-task training on accelerate: `mtu train config.yaml`.

    >>> from mtu.training import load_config, train
    >>> summary = train(load_config("configs/shapes.yaml", {"train.max_steps": 50}))

Importing this package is light; `train` and `dry_run` (`mtu.training.loop`) import torch, diffusers and
accelerate on first use.
"""

from mtu.training.config import TrainConfig, load_config
from mtu.utils.lazy import lazy_exports

_LAZY = {"train": "mtu.training.loop", "dry_run": "mtu.training.loop"}

__all__ = ["TrainConfig", "dry_run", "load_config", "train"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
