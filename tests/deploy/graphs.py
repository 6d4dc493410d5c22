"""Checks shared by the runtimes' tests: denoiser inputs, and an all-tasks graph against the PyTorch MTU model."""

from __future__ import annotations

import torch

import mtu
from tests.core.tiny_models import relative_error
from tests.helpers import TASKS

MIXED = ["t2i", "edit", "inpaint", "t2i", "sr", "remove"]


def denoiser_inputs(model, tasks: list[str], height: int = 16, width: int = 12, seed: int = 0):
    """Inputs at another batch and size than the graphs were traced with."""
    generator = torch.Generator().manual_seed(seed)
    sample = mtu.concat_task_inputs(
        [torch.randn(1, model.task_in_channels(task), height, width, generator=generator) for task in tasks]
    )
    timestep = torch.randint(0, 1000, (len(tasks),), generator=generator).float()
    text = torch.randn(len(tasks), 7, model.config.cross_attention_dim, generator=generator)
    return sample, timestep, text


def all_task_errors(model, graph) -> dict[str, float]:
    """Relative error of an all-tasks `Graph` against `model` on two samples of each task and a mixed batch."""
    errors = {}
    for tasks in [[task] * 2 for task in TASKS] + [MIXED]:
        sample, timestep, text = denoiser_inputs(model, tasks)
        with torch.no_grad():
            expected = model(sample, timestep, text, task=tasks).sample
        padded = torch.nn.functional.pad(sample, (0, 0, 0, 0, 0, 9 - sample.shape[1]))
        ids = torch.tensor([TASKS.index(task) for task in tasks])
        actual = graph(sample=padded, timestep=timestep, encoder_hidden_states=text, task_id=ids)[0]
        errors[",".join(tasks)] = relative_error(actual, expected)
    return errors
