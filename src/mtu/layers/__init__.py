"""The layers MTU adds to a denoiser: fused experts with a router, and per-task norms and input convs."""

from mtu.layers.experts import MTUFeedForward
from mtu.layers.router import TaskBatch, TaskContext, TaskRouter
from mtu.layers.task_layers import TaskInputConv, TaskLayerNorm

__all__ = ["MTUFeedForward", "TaskBatch", "TaskContext", "TaskInputConv", "TaskLayerNorm", "TaskRouter"]
