"""How task ids reach layers that diffusers calls with one argument (`self.ff(x)`, `self.conv_in(x)`).

`MTUModel.forward` resolves the tasks of a batch once into a `TaskBatch` and activates it on the
shared `TaskContext` for the duration of the base model's forward; every MTU layer reads it there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


def task_runs(ids: list[int]) -> list[tuple[int, slice]]:
    """Maximal runs of consecutive equal task ids, as (task id, rows): [0, 0, 2] -> [(0, 0:2), (2, 2:3)]."""
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    return [(ids[start], slice(start, stop)) for start, stop in zip(starts, starts[1:] + [len(ids)])]


@dataclass
class TaskBatch:
    """The tasks of one batch, resolved once per forward.

    Attributes:
        ids: (B,) task id per sample.
        embedding: (B, E) task embedding per sample.
        runs: maximal runs of consecutive samples sharing a task, as (task id, rows), in batch order.
            Layers process each run as a slice (a view, no gather) and concatenate the outputs.
    """

    ids: torch.Tensor
    embedding: torch.Tensor
    runs: list[tuple[int, slice]]

    @classmethod
    def from_ids(
        cls, ids: list[int], embeddings: Sequence[torch.Tensor] | torch.Tensor, device: torch.device
    ) -> TaskBatch:
        """`embeddings[t]` is task t's (E,) embedding: one parameter per task, or the rows of a (T, E) table.

        Only the tasks present are stacked, so a task absent from the batch gets no gradient at all (None,
        not zeros): AdamW then leaves its embedding and its moments alone.
        """
        present = sorted(set(ids))
        table = torch.stack([embeddings[task] for task in present])
        position = {task: row for row, task in enumerate(present)}
        rows = torch.tensor([position[task] for task in ids], dtype=torch.long, device=table.device)
        id_tensor = torch.tensor(ids, dtype=torch.long, device=device)
        return cls(ids=id_tensor, embedding=table[rows], runs=task_runs(ids))

    @property
    def single_task(self) -> int | None:
        """The task id when every sample has the same task, else None."""
        return self.runs[0][0] if len(self.runs) == 1 else None

    def run_embeddings(self) -> torch.Tensor:
        """(R, E): the task embedding of each run."""
        return self.embedding[[rows.start for _, rows in self.runs]]

    def per_sample(self, values: torch.Tensor) -> torch.Tensor:
        """(R, ...) per-run values -> (B, ...) per sample; a single-task batch keeps (1, ...), which broadcasts."""
        if self.single_task is not None:
            return values
        lengths = torch.tensor([rows.stop - rows.start for _, rows in self.runs], device=values.device)
        return values.repeat_interleave(lengths, dim=0)

    def map_runs(
        self, tensor: torch.Tensor, function: Callable[[int, int, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Apply `function(run index, task id, rows of tensor)` per run and concatenate along the batch.

        A single-task batch is one run over the whole tensor, whatever its batch size (so feed-forward
        chunking along the batch still works for it).
        """
        if self.single_task is not None:
            return function(0, self.single_task, tensor)
        # split, not slicing: the backward of one split is one concatenation of the runs' gradients, while each
        # slice's backward writes a zero-filled full-size gradient and adds them up (~7% of a training step).
        parts = tensor.split([rows.stop - rows.start for _, rows in self.runs])
        return torch.cat([function(index, task, part) for index, ((task, _), part) in enumerate(zip(self.runs, parts))])


class TaskContext:
    """Shared, per-model holder of the active `TaskBatch` (a plain object: not in any state dict)."""

    def __init__(self) -> None:
        self.batch: TaskBatch | None = None

    @contextmanager
    def activate(self, batch: TaskBatch) -> Iterator[None]:
        previous, self.batch = self.batch, batch
        try:
            yield
        finally:
            self.batch = previous

    def current(self, batch_size: int) -> TaskBatch:
        """The active batch, checked against the batch size a layer actually received."""
        batch = self.batch
        if batch is None:
            raise RuntimeError(
                "an MTU layer ran without a task: call the MTUModel (model(..., task=...)), not its base model. "
                "With gradient checkpointing, enable it through MTUModel.enable_gradient_checkpointing()."
            )
        if batch.single_task is None and batch_size != batch.ids.shape[0]:
            raise ValueError(
                f"an MTU layer received {batch_size} samples but the mixed-task batch has {batch.ids.shape[0]}; "
                "feed-forward chunking along the batch (enable_forward_chunking(dim=0)) splits mixed-task "
                "batches: chunk along dim=1 or run one task per batch"
            )
        return batch


class TaskRouter(nn.Module):
    """Task embedding -> softmax weights over experts, for one FFN layer.

    The last layer starts at zero, so every expert gets weight 1/N and the upcycled FFN is exactly
    the pre-trained one at initialisation.

    Args:
        embedding_dim, hidden_dim, num_experts: sizes of the two-layer MLP (the paper's router).
        bias: whether the last layer has a bias (the paper's router does). Without it, no router parameter
            gets the same update from every task: at step 0 the zero-initialised last layer's bias is the
            only parameter with a gradient that does not depend on the task, and Adam moves it as fast as
            any other (the suspected mechanism of task-blind, dead or saturated routers; issue 27).
        gate_dropout: in training only, each expert's weight is set to 0 with this probability and the rest
            renormalised (Zhao et al., RecSys 2019: it keeps a gate from polarising onto one expert).
    """

    def __init__(
        self, embedding_dim: int, hidden_dim: int, num_experts: int, bias: bool = True, gate_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embedding_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, num_experts, bias=bias)
        )
        nn.init.zeros_(self.net[-1].weight)
        if bias:
            nn.init.zeros_(self.net[-1].bias)
        self.gate_dropout = gate_dropout

    def logits(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, N) expert logits."""
        return self.net(task_embedding)

    def hidden_preactivations(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, hidden): the first layer's output before SiLU (router health reads it)."""
        return self.net[0](task_embedding)

    def probabilities(self, task_embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, N) softmax weights, without gate dropout: what inference, folding and export use."""
        return self.logits(task_embedding).softmax(dim=-1)

    def forward(self, task_embedding: torch.Tensor) -> torch.Tensor:
        # (B, E) -> (B, N)
        weights = self.probabilities(task_embedding)
        if not (self.training and self.gate_dropout > 0 and weights.shape[-1] > 1):
            return weights
        keep = torch.rand_like(weights) >= self.gate_dropout
        # A row that would lose every expert keeps them all: a zero row has nothing to renormalise.
        keep = keep | ~keep.any(dim=-1, keepdim=True)
        kept = weights * keep
        return kept / kept.sum(dim=-1, keepdim=True)
