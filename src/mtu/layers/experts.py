"""The MTU feed-forward layer: a pre-trained diffusers `FeedForward` split into N experts.

Expert i owns hidden units [i*d/N, (i+1)*d/N) of the first projection (both halves of a GEGLU) and
the matching input columns of the output projection. Mixing the experts' outputs with weights w_i,

    out = sum_i N * w_i * E_i(x) + b_out = W_out (s * act(W_in x)) + b_out,   s_j = N * w_{expert(j)},

so the whole layer runs as the original two GEMMs plus one scaling (of W_out's columns per run of same-task samples,
or of the activations, whichever is smaller): its cost does not grow with N, and a batch may mix tasks.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mtu.layers.router import TaskBatch, TaskContext, TaskRouter


def feedforward_hidden_size(feedforward: nn.Module) -> int:
    """Hidden size (d_ff) of a diffusers `FeedForward`: the input width of its output projection."""
    return feedforward.net[2].in_features


def expert_count_problem(hidden_sizes: list[int], num_experts: int) -> str | None:
    """Why `num_experts` cannot split FFNs of these hidden sizes into equal experts, with the counts that can;
    None when it divides every one."""
    bad = sorted({size for size in hidden_sizes if size % num_experts})
    if not bad:
        return None
    valid = [n for n in (1, 2, 4, 8, 16, 32, 64) if all(size % n == 0 for size in hidden_sizes)]
    return f"num_experts={num_experts} does not divide the FFN hidden sizes {bad} of this model; valid choices: {valid}"


def check_feedforward(name: str, feedforward: nn.Module) -> list[str]:
    """Problems that keep `feedforward` from being split into experts (empty when it can be)."""
    net = getattr(feedforward, "net", None)
    if not isinstance(net, nn.ModuleList) or len(net) < 3:
        return [f"{name}: expected a diffusers FeedForward (net = [activation, dropout, Linear, ...])"]
    if not isinstance(getattr(net[0], "proj", None), nn.Linear) or not isinstance(net[2], nn.Linear):
        return [f"{name}: unsupported FeedForward activation {type(net[0]).__name__} (needs a `proj` Linear)"]
    return []


class MTUFeedForward(nn.Module):
    """N experts carved out of a pre-trained FFN, mixed by a task-conditioned router.

    Args:
        feedforward: the pre-trained diffusers `FeedForward`; kept as `base_layer` (its weights are the experts).
        num_experts: N; must divide the FFN's hidden size.
        task_embedding_dim, router_hidden_dim: router sizes.
        context: the model's shared `TaskContext`.
        router_bias, gate_dropout: router options (`TaskRouter`).
    """

    def __init__(
        self,
        feedforward: nn.Module,
        num_experts: int,
        task_embedding_dim: int,
        router_hidden_dim: int,
        context: TaskContext,
        router_bias: bool = True,
        gate_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_size = feedforward_hidden_size(feedforward)
        problem = expert_count_problem([hidden_size], num_experts)
        if problem:
            raise ValueError(problem)
        self.base_layer = feedforward
        self.num_experts = num_experts
        self.expert_size = hidden_size // num_experts
        proj_out = feedforward.net[2]
        self.router = TaskRouter(task_embedding_dim, router_hidden_dim, num_experts, router_bias, gate_dropout).to(
            device=proj_out.weight.device, dtype=proj_out.weight.dtype
        )
        self._context = context
        self.train(feedforward.training)  # an eval-mode base stays in eval mode: no gate dropout at inference

    def expert_weights(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) task embeddings -> (B, N) router weights (no gate dropout: what inference uses)."""
        return self.router.probabilities(task_embedding)

    def hidden_scale(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, d_ff): N * w_i repeated over expert i's hidden units (gate dropout in training)."""
        return (self.num_experts * self.router(task_embedding)).repeat_interleave(self.expert_size, dim=-1)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        batch = self._context.current(hidden_states.shape[0])
        activation, dropout, proj_out, *tail = self.base_layer.net
        hidden = dropout(activation(hidden_states))  # (B, ..., d_ff): every expert in one GEMM
        if self.num_experts == 1:
            output = proj_out(hidden)  # one expert: its scale N * w = 1 * softmax of one logit = 1 exactly
        else:
            scales = self.hidden_scale(batch.run_embeddings()).to(proj_out.weight.dtype)  # (R, d_ff)
            output = self._scaled_projection(hidden, scales, batch, proj_out)
        for module in tail:
            output = module(output)
        return output

    @staticmethod
    def _scaled_projection(
        hidden: torch.Tensor, scales: torch.Tensor, batch: TaskBatch, proj_out: nn.Linear
    ) -> torch.Tensor:
        """W_out (s * h) + b_out, scaling whichever side costs fewer multiplies.

        Folding s into W_out's columns costs (dim_out x d_ff) per run of same-task samples, plus a copy of
        the output when runs are concatenated; scaling the activations costs (tokens x d_ff), in place when
        nothing needs the unscaled activations for backward, and keeps one GEMM for a mixed-task batch. Few
        tokens (SD1.5's 1280-channel level, small latents, training crops) favour the activations.
        """
        rows, hidden_size = hidden.numel() // hidden.shape[-1], hidden.shape[-1]
        runs = len(batch.runs)
        weight_cost = runs * proj_out.weight.numel() + (runs > 1) * rows * proj_out.out_features
        if weight_cost < rows * hidden_size:
            return batch.map_runs(
                hidden, lambda run, task, part: F.linear(part, proj_out.weight * scales[run], proj_out.bias)
            )
        per_sample = batch.per_sample(scales)  # (B, d_ff), or (1, d_ff) for a single-task batch of any size
        per_sample = per_sample.view(per_sample.shape[0], *[1] * (hidden.dim() - 2), hidden_size)
        if hidden.requires_grad or per_sample.requires_grad:
            return proj_out(hidden * per_sample)
        return proj_out(hidden.mul_(per_sample))  # no autograd graph: reuse the activation buffer

    @torch.no_grad()
    def fold(self, task_embedding: torch.Tensor) -> nn.Module:
        """A plain `FeedForward` equal to this layer for one task ((E,) embedding): the scale folded into W_out."""
        feedforward = copy.deepcopy(self.base_layer)
        weights = self.expert_weights(task_embedding[None])[0]  # never gate dropout, even in training mode
        scale = (self.num_experts * weights).repeat_interleave(self.expert_size)
        feedforward.net[2].weight.mul_(scale.to(feedforward.net[2].weight.dtype))
        return feedforward
