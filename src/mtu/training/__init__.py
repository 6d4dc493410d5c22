"""Multi-task training on accelerate: `mtu train config.yaml`.

    >>> from mtu.training import load_config, train
    >>> summary = train(load_config("configs/shapes.yaml", {"train.max_steps": 50}))

Importing this package is light; `train` imports torch, diffusers and accelerate when called.
"""

from mtu.training.config import TrainConfig, load_config


def train(config: TrainConfig, resume: str | None = None, stop_after: int | None = None) -> dict:
    """Run training (see `mtu.training.loop.train`)."""
    from mtu.training.loop import train as run

    return run(config, resume, stop_after)


def dry_run(config: TrainConfig) -> str:
    """Trainable parameter counts of every method for `config` (see `mtu.training.loop.dry_run`)."""
    from mtu.training.loop import dry_run as count

    return count(config)


__all__ = ["TrainConfig", "dry_run", "load_config", "train"]
