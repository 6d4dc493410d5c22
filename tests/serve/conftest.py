"""A tiny random MTU pipeline and model folder shared by the serve tests (built in code, ~2 s)."""

from __future__ import annotations

import socket

import pytest
import torch

from mtu.pipelines import MTUPipeline
from tests.helpers import upcycle_tiny_sd_pipeline


@pytest.fixture(scope="session")
def tiny_mtu_folder(tmp_path_factory):
    """An MTU folder (2 experts, the five built-in tasks) on a tiny random SD pipeline: 16x16 images."""
    return upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="session")
def tiny_pipe(tiny_mtu_folder):
    pipe = MTUPipeline.from_pretrained(tiny_mtu_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """The tiny models gain nothing from intra-op threads; on a shared 2-core machine they only contend
    (seen: 2 steps of the tiny UNet take 0.1 s on one thread, up to 7 s on two beside a training job)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A TCP port nothing listens on now, for a test server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
