"""Router analysis of the reproduction (Fig. 5 of the paper): do the experts specialise by task?

For each run (one training seed) the model's routers give, per layer, a (num_tasks, num_experts) array of
softmax rows (`MTUModel.routing_weights()`, rows in task order). Per layer and seed this module reports:

- per task, the top router weight and its expert (the argmax);
- the across-task Jensen-Shannon divergence, generalised to T tasks with equal weights:
      JS = H(mean_t p_t) - mean_t H(p_t),   H in bits (log base 2),
  0 when every task routes the same way, at most min(log2 T, log2 N) (T tasks, N experts), reached when
  the tasks use disjoint experts, e.g. one-hot rows on distinct experts;
- a (layer, task) cell is "specialised" when its top weight >= 0.5 (one expert gets most of the task).

Across seeds: the agreement is the fraction of cells, among those specialised in every seed, whose argmax
expert is the same in all seeds. Expert indices are comparable across seeds because upcycling fixes them:
expert i starts as slice i of the pre-trained FFN's hidden units in every seed.

Verdict (rule fixed by the protocol before any result):
- "specialises": >= 2 seeds, >= 1 cell specialised in every seed, and the argmax agrees in all seeds on
  every such cell;
- "does not specialise at this budget": no cell reaches 0.5 in any seed;
- "inconclusive" otherwise (one seed only, no cell specialised in every seed, or the seeds disagree);
  the summary's "reason" says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mtu.evaluation.analysis import short_layer_name
from mtu.evaluation.router_health import js_divergence

THRESHOLD = 0.5  # top router weight from which a (layer, task) cell counts as specialised
_ROW_TOLERANCE = 1e-2  # softmax rows stored in low precision do not sum to exactly 1


def _check(weights_by_seed: Sequence[Mapping], task_names: Sequence[str]) -> list[str]:
    """The layers in model order (the first seed's order); raises ValueError on malformed input."""
    if not weights_by_seed:
        raise ValueError("weights_by_seed is empty: pass one {layer: (num_tasks, num_experts)} dict per seed")
    if not task_names:
        raise ValueError("task_names is empty")
    layers = list(weights_by_seed[0])
    if not layers:
        raise ValueError("the routing weights have no layers")
    for index, weights in enumerate(weights_by_seed):
        if set(weights) != set(layers):
            raise ValueError(f"seed {index} has layers {sorted(weights)}, seed 0 has {sorted(layers)}")
    return layers


def _rows(value, layer: str, num_tasks: int) -> np.ndarray:
    rows = np.asarray(value, dtype=float)
    if rows.ndim != 2 or rows.shape[0] != num_tasks:
        raise ValueError(f"layer {layer}: expected ({num_tasks} tasks, num_experts) weights, got shape {rows.shape}")
    if np.any(rows < 0) or np.any(np.abs(rows.sum(axis=1) - 1.0) > _ROW_TOLERANCE):
        raise ValueError(f"layer {layer}: router weights must be softmax rows (non-negative, summing to 1)")
    return rows / rows.sum(axis=1, keepdims=True)


def _per_seed(weights: Mapping, layers: list[str], num_tasks: int) -> dict:
    arrays = [_rows(weights[layer], layer, num_tasks) for layer in layers]
    top = np.array([rows.max(axis=1) for rows in arrays])  # (L, T)
    argmax = np.array([rows.argmax(axis=1) for rows in arrays])  # (L, T)
    return {
        "top": top.tolist(),
        "argmax": argmax.tolist(),
        "js": [js_divergence(rows) for rows in arrays],
        "specialised_cells": int((top >= THRESHOLD).sum()),
    }


def _agreement(seeds: list[dict]) -> dict:
    """Argmax agreement over the cells specialised in every seed (None when it cannot be measured)."""
    everywhere = np.all([np.asarray(s["top"]) >= THRESHOLD for s in seeds], axis=0)  # (L, T)
    argmax = np.array([s["argmax"] for s in seeds])  # (S, L, T)
    same = np.all(argmax == argmax[0], axis=0)
    cells, agreeing = int(everywhere.sum()), int((same & everywhere).sum())
    measurable = len(seeds) >= 2 and cells > 0
    return {"cells": cells, "agreeing": agreeing, "fraction": agreeing / cells if measurable else None}


def _verdict(seeds: list[dict], agreement: dict) -> tuple[str, str]:
    if all(s["specialised_cells"] == 0 for s in seeds):
        return (
            "does not specialise at this budget",
            f"no (layer, task) cell has a top weight >= {THRESHOLD} in any seed",
        )
    if len(seeds) < 2:
        return "inconclusive", "one seed: the argmax pattern cannot be checked across seeds"
    if agreement["cells"] == 0:
        return "inconclusive", f"cells specialise, but none has a top weight >= {THRESHOLD} in every seed"
    if agreement["agreeing"] < agreement["cells"]:
        return "inconclusive", (
            f"the argmax expert agrees across seeds on {agreement['agreeing']} of the "
            f"{agreement['cells']} cells specialised in every seed"
        )
    return "specialises", (
        f"{agreement['cells']} cells specialised in every seed, the same expert in all {len(seeds)} seeds"
    )


def router_summary(weights_by_seed: Sequence[Mapping], task_names: Sequence[str]) -> dict:
    """Per-layer router statistics of one configuration over its seeds, and the specialisation verdict.

    Args:
        weights_by_seed: one {layer name: (num_tasks, num_experts) softmax rows} per seed (arrays or nested
            lists, as stored by the runner); layers in model order.
        task_names: the row names, in order.

    Returns:
        A JSON-serialisable dict: "layers", "tasks", "threshold", "seeds" (per seed: "top" and "argmax"
        as [layer][task], "js" per layer, "specialised_cells"), "specialised_cells" (per seed),
        "agreement" {"cells", "agreeing", "fraction"}, "verdict", "reason".
    """
    layers = _check(weights_by_seed, task_names)
    seeds = [_per_seed(weights, layers, len(task_names)) for weights in weights_by_seed]
    agreement = _agreement(seeds)
    verdict, reason = _verdict(seeds, agreement)
    return {
        "layers": layers,
        "tasks": list(task_names),
        "threshold": THRESHOLD,
        "seeds": seeds,
        "specialised_cells": [s["specialised_cells"] for s in seeds],
        "agreement": agreement,
        "verdict": verdict,
        "reason": reason,
    }


def router_figure(summary: Mapping, path: str | Path, seed_labels: Sequence[str] | None = None) -> Path:
    """PNG: one panel per seed, rows = layers (model order), columns = tasks, colour = top router weight,
    each cell annotated with its argmax expert. `seed_labels` titles the panels ("seed 0", ... by default)."""
    # No pyplot: no global state and no display needed, so it runs inside training or the CLI alike.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers, tasks, seeds = summary["layers"], summary["tasks"], summary["seeds"]
    figure = Figure(
        figsize=(1.8 + (0.9 + 0.55 * len(tasks)) * len(seeds), 1.6 + 0.28 * len(layers)), layout="constrained"
    )
    panels = figure.subplots(1, len(seeds), squeeze=False, sharey=True)[0]
    labels = list(seed_labels) if seed_labels is not None else [f"seed {i}" for i in range(len(seeds))]
    for axes, seed, label in zip(panels, seeds, labels, strict=True):
        top, argmax = np.asarray(seed["top"]), np.asarray(seed["argmax"])
        image = axes.imshow(top, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        for (row, column), expert in np.ndenumerate(argmax):
            # Dark text on the bright end of viridis, light text elsewhere, so every number stays readable.
            axes.text(
                column,
                row,
                str(expert),
                ha="center",
                va="center",
                fontsize=6,
                color="black" if top[row, column] > 0.6 else "white",
            )
        axes.set_title(label, fontsize=9)
        axes.set_xticks(range(len(tasks)), tasks, fontsize=7, rotation=45, ha="right")
    panels[0].set_yticks(range(len(layers)), [short_layer_name(name) for name in layers], fontsize=6)
    figure.colorbar(image, ax=list(panels), label="top router weight")
    figure.suptitle("top router weight per layer and task (number: the expert)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=150)
    return path
