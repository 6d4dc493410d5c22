"""Router health: does an MTU model still route by task? (DESIGN.md section 1: routing must stay task-dependent.)

Per upcycled FFN and task: the router's expert weights, its top weight and that expert. Per layer:

- the across-task Jensen-Shannon divergence, generalised to T tasks with equal weights,
      JS = H(mean_t p_t) - mean_t H(p_t)   (bits),
  0 when every task routes alike, at most min(log2 T, log2 N); a layer is *task-dependent* when
  JS >= `TASK_DEPENDENT_JS` bits;
- *dead*: every hidden unit of the router is off for every task (SiLU pre-activation <= `DEAD_PREACTIVATION`,
  where |SiLU| < 0.015), so the output is the last layer's bias, one vector for every task;
- *saturated*: the same expert gets >= `SATURATED_WEIGHT` for every task: the layer runs 1/N of its FFN, x N, for all.

A dead or saturated router turns MTU into a shared fine-tune; training warns when one appears
(`mtu.training.feedback`), `mtu info` prints the summary, and reproduction records and model cards carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

TASK_DEPENDENT_JS = 0.05  # bits
SATURATED_WEIGHT = 0.99
DEAD_PREACTIVATION = -6.0


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits along the last axis, with 0 log 0 = 0."""
    logs = np.log2(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(axis=-1)


def js_divergence(rows: np.ndarray) -> float:
    """Generalised Jensen-Shannon divergence (bits) of the (T, N) distributions, equal weights."""
    return float(max(entropy_bits(rows.mean(axis=0)) - entropy_bits(rows).mean(), 0.0))


@dataclass(frozen=True)
class LayerHealth:
    """One router over the tasks: `weights` (T, N) softmax rows in task order."""

    name: str
    weights: np.ndarray
    js: float
    dead: bool
    saturated: bool

    @property
    def task_dependent(self) -> bool:
        return self.js >= TASK_DEPENDENT_JS

    @property
    def top(self) -> np.ndarray:
        return self.weights.max(axis=1)

    @property
    def expert(self) -> np.ndarray:
        return self.weights.argmax(axis=1)

    @property
    def state(self) -> str:
        """One word: "dead", "saturated", "task-dependent" or "task-blind" (JS below the threshold)."""
        if self.dead:
            return "dead"
        if self.saturated:
            return "saturated"
        return "task-dependent" if self.task_dependent else "task-blind"


def layer_health(name: str, weights: np.ndarray, preactivations: np.ndarray | None = None) -> LayerHealth:
    """Health of one router from its (T, N) weights and, when known, its (T, hidden) pre-activations.

    Without pre-activations (e.g. weights read from a record) a layer is never called dead.
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[0] < 1:
        raise ValueError(f"layer {name}: expected (num_tasks, num_experts) router weights, got shape {weights.shape}")
    dead = preactivations is not None and bool(np.all(np.asarray(preactivations) <= DEAD_PREACTIVATION))
    # One expert for every task: tasks saturated on *different* experts are routing by task, not collapsed.
    one_expert = len(set(weights.argmax(axis=1).tolist())) == 1
    saturated = one_expert and bool(np.all(weights.max(axis=1) >= SATURATED_WEIGHT))
    return LayerHealth(name, weights, js_divergence(weights), dead, saturated)


@dataclass(frozen=True)
class RouterHealth:
    """Every router of a model over `tasks`; `summary()` is what logs, `mtu info`, records and cards show."""

    tasks: list[str]
    layers: list[LayerHealth]

    def summary(self) -> dict:
        count = len(self.layers)
        return {
            "tasks": list(self.tasks),
            "layers": count,
            "task_dependent": sum(layer.task_dependent for layer in self.layers),
            "dead": sum(layer.dead for layer in self.layers),
            "saturated": sum(layer.saturated for layer in self.layers),
            "mean_js_bits": round(sum(layer.js for layer in self.layers) / count, 4) if count else 0.0,
            "js_threshold_bits": TASK_DEPENDENT_JS,
        }

    def summary_line(self) -> str:
        s = self.summary()
        if len(self.tasks) < 2:
            return f"router health: {s['layers']} routers over one task ({self.tasks[0]}): routing cannot depend on it"
        return (
            f"router health over {', '.join(self.tasks)}: {s['task_dependent']} of {s['layers']} layers route by task "
            f"(JS >= {TASK_DEPENDENT_JS} bits), {s['dead']} dead, {s['saturated']} saturated; "
            f"mean JS {s['mean_js_bits']:.3f} bits"
        )

    def to_dict(self) -> dict:
        """JSON-serialisable: the summary and, per layer, the weights, top weight, expert, JS and state."""
        layers = [
            {
                "name": layer.name,
                "js_bits": round(layer.js, 4),
                "state": layer.state,
                "top": [round(float(v), 4) for v in layer.top],
                "expert": [int(e) for e in layer.expert],
                "weights": np.round(layer.weights, 4).tolist(),
            }
            for layer in self.layers
        ]
        return {**self.summary(), "per_layer": layers}

    def table(self) -> str:
        """Per layer: state, JS, and per task the top expert and its weight."""
        from mtu.evaluation.analysis import short_layer_name

        header = f"{'layer':<22}{'state':<16}{'JS bits':>8}  " + "  ".join(f"{t:>12}" for t in self.tasks)
        rows = [header]
        for layer in self.layers:
            cells = "  ".join(f"{f'e{e} {w:.2f}':>12}" for e, w in zip(layer.expert, layer.top))
            rows.append(f"{short_layer_name(layer.name):<22}{layer.state:<16}{layer.js:>8.3f}  {cells}")
        return "\n".join(rows)


@torch.no_grad()
def router_health(model, tasks: Sequence[str] | None = None) -> RouterHealth:
    """Router health of an `MTUModel` over `tasks` (default: every task it serves), read from its routers.

    Raises ValueError for a model without routers (a LoRA / IA3 / full baseline) or an unknown task.
    """
    from mtu.layers import MTUFeedForward

    names = list(tasks) if tasks is not None else list(model.task_names)
    unknown = sorted(set(names) - set(model.task_names))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; this model serves {model.task_names}")
    embeddings = torch.stack([model.task_embeddings[name] for name in names])
    layers = []
    for name, module in model.base_model.named_modules():
        if isinstance(module, MTUFeedForward):
            router = module.router
            rows = embeddings.to(next(router.parameters()))
            weights = router.probabilities(rows).float().cpu().numpy()
            preactivations = router.hidden_preactivations(rows).float().cpu().numpy()
            layers.append(layer_health(name, weights, preactivations))
    if not layers:
        raise ValueError("this model has no routers (a baseline without experts): router health does not apply")
    return RouterHealth(names, layers)
