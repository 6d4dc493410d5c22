"""Fixtures of the training tests: a tiny SD folder, config builders, one torch thread (the CI box is shared)."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from tests.helpers import save_tiny_sd_pipeline

ALL_TASKS = ("t2i", "edit", "sr", "remove", "inpaint")


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads on two shared cores run these tiny models ~6x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd"))


def config_dict(model, output_dir, tasks=ALL_TASKS, **sections) -> dict:
    """A CPU-sized training config on Shapes; `sections` update sections key by key (e.g. train={...})."""
    data = {
        "model": str(model),
        "output_dir": str(output_dir),
        "seed": 0,
        "tasks": {task: {"source": {"type": "shapes"}} for task in tasks},
        "data": {"resolution": 16, "batch_size": 4},
        "train": {"max_steps": 4, "lr_scheduler": "constant", "learning_rate": 1e-3},
        "checkpoint": {"every": 2},
        "logging": {"every": 1, "log_with": "none"},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **copy.deepcopy(values)}
        else:
            data[name] = values
    return data


def write_config(path, data: dict):
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # task order is task-id order
    return path
