"""A web demo of an MTU model: one chat page for every task, requests batched across users.

The pieces without a web page (`guess_task`, `load_upload`, `BatchWorker`, `ChatService`) import no
gradio; `mtu.serve.app` (the page) and `serve` (the server) need the `demo` extra.
"""

from mtu.serve.batching import BatchResult, BatchWorker, ServerBusy
from mtu.serve.guess import guess_task
from mtu.serve.limits import RequestError, ServeLimits
from mtu.serve.server import load_pipeline, serve
from mtu.serve.service import ChatService, Reply, Settings
from mtu.serve.uploads import load_upload, mask_from_layers, to_rgb

__all__ = [
    "BatchResult",
    "BatchWorker",
    "ChatService",
    "Reply",
    "RequestError",
    "ServeLimits",
    "ServerBusy",
    "Settings",
    "guess_task",
    "load_pipeline",
    "load_upload",
    "mask_from_layers",
    "serve",
    "to_rgb",
]
