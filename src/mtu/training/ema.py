"""Exponential moving averages of weights: one update rule for `mtu train` and the Shapes pretraining recipe.

`mtu train` averages the trainable weights only (the frozen base never changes), with `TrainableEMA`;
the pretraining recipe (`mtu.pretrain.loop.Stage`) averages whole modules by name with `update_averages`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


def warmed_decay(decay: float, updates: int) -> float:
    """The decay of update number `updates` (1 for the first): min(decay, (1 + n) / (10 + n)).

    Early weights change too fast for a long average to track them; diffusers' `EMAModel` warms up the same way.
    """
    return min(decay, (1 + updates) / (10 + updates))


@torch.no_grad()
def update_averages(
    averages: Iterable[torch.Tensor], parameters: Iterable[torch.Tensor], decay: float, updates: int
) -> None:
    """Move each average toward its parameter in place, with the decay of update number `updates`."""
    weight = 1 - warmed_decay(decay, updates)
    for average, parameter in zip(averages, parameters, strict=True):
        average.lerp_(parameter.detach().to(average.dtype), weight)


class TrainableEMA:
    """EMA over a fixed list of parameters, checkpointed by `mtu.training.checkpoint` without pickle.

    `mtu.training.checkpoint` writes `state_dict`'s shadow tensors as safetensors, decay and update count as JSON.

    The decay warms up (`warmed_decay`), so early averages are not dominated by the untrained start.
    """

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.parameters, self.decay, self.updates = list(parameters), decay, 0
        self.shadow = [p.detach().float().clone() for p in self.parameters]

    def update(self) -> None:
        self.updates += 1
        update_averages(self.shadow, self.parameters, self.decay, self.updates)

    @contextmanager
    @torch.no_grad()
    def swapped(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the model (for samples and the final export)."""
        saved = [p.detach().clone() for p in self.parameters]
        for average, parameter in zip(self.shadow, self.parameters):
            parameter.copy_(average)
        try:
            yield
        finally:
            for original, parameter in zip(saved, self.parameters):
                parameter.copy_(original)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(
                f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)} trainable parameters"
            )
        self.decay, self.updates = state["decay"], state["updates"]
        for average, saved in zip(self.shadow, state["shadow"]):
            average.copy_(saved)
