"""Shared fixtures: global state reset so tests do not depend on order."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _reset_global_state():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    yield
