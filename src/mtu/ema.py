"""An exponential moving average of the trainable weights only (the frozen base never changes)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class TrainableEMA:
    """EMA over a fixed list of parameters, checkpointed by `mtu.training.checkpoint` without pickle.

    `mtu.training.checkpoint` writes `state_dict`'s shadow tensors as safetensors, decay and update count as JSON.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not
    dominated by the untrained start (diffusers' `EMAModel` does the same).
    """

    def __init__(self, parameters: list[torch.nn.Parameter], decay: float) -> None:
        self.parameters, self.decay, self.updates = list(parameters), decay, 0
        self.shadow = [p.detach().float().clone() for p in self.parameters]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, parameter in zip(self.shadow, self.parameters):
            average.lerp_(parameter.detach().float(), 1 - decay)

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
            raise ValueError(f"EMA state has {len(state['shadow'])} tensors, the model {len(self.shadow)} trainable parameters")
        self.decay, self.updates = state["decay"], state["updates"]
        for average, saved in zip(self.shadow, state["shadow"]):
            average.copy_(saved)
