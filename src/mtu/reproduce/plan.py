"""The runs behind each table of the paper, as data."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

ALL_TASKS = ("t2i", "edit", "sr", "remove", "inpaint")
EXPERT_COUNTS = (1, 2, 4, 8, 16)
QUICK_EXPERT_COUNTS = (1, 4)
MAIN_EXPERTS = 4  # the paper's best N for SDv1.5


@dataclass(frozen=True)
class Run:
    """One training run: what trains, on which tasks, with how many experts, from which seed.

    Attributes:
        method: "mtu", "single-task", "lora", "ia3", or "full" (every denoiser weight, for Fig. 2), or
            "base" (no training: the upcycled base model, t2i only).
        tasks: the tasks it trains (and is evaluated on).
        num_experts: experts per FFN (MTU and single-task).
        seed: training seed (evaluation seeds are fixed, so runs differ only by training).
    """

    method: str
    tasks: tuple[str, ...]
    num_experts: int
    seed: int

    @property
    def scored(self) -> tuple[str, ...]:
        """What it is scored on: its tasks, sr and inpaint also from the image alone (see
        `mtu.evaluation.shapes_eval.IMAGE_ONLY_TASKS`); the full fine-tunes serve Fig. 2 only."""
        from mtu.evaluation.shapes_eval import with_image_only

        return self.tasks if self.method == "full" else with_image_only(self.tasks)

    @property
    def name(self) -> str:
        tasks = "+".join(self.tasks)
        experts = f"-n{self.num_experts}" if self.method in ("mtu", "single-task") else ""
        return f"{self.method}{experts}-{tasks}-s{self.seed}"


def build_plan(quick: bool, seeds: tuple[int, ...], tasks: tuple[str, ...] = ALL_TASKS) -> dict[str, list[Run]]:
    """Runs per table. Quick: one seed, N in {1, 4}, no pairs; the deviation runs stay (they are the figure).

    `tasks` must include "t2i" (the base model's task, the reference of "T2I quality is kept").
    """
    if "t2i" not in tasks or len(tasks) < 2:
        raise ValueError(f"the reproduction needs t2i and at least one other task, got {list(tasks)}")
    expert_counts = QUICK_EXPERT_COUNTS if quick else EXPERT_COUNTS
    mtu = [Run("mtu", tasks, MAIN_EXPERTS, seed) for seed in seeds]
    tables = {
        "main": [Run("base", ("t2i",), MAIN_EXPERTS, seeds[0])]
        + [Run("single-task", (task,), MAIN_EXPERTS, seed) for task in tasks for seed in seeds]
        + mtu
        + [Run(method, tasks, MAIN_EXPERTS, seed) for method in ("lora", "ia3") for seed in seeds],
        "experts": [Run("mtu", tasks, n, seed) for n in expert_counts for seed in seeds],
        "pairs": [] if quick else [Run("mtu", pair, MAIN_EXPERTS, seed) for pair in combinations(tasks, 2) for seed in seeds] + mtu,
        "deviation": [Run("full", (task,), MAIN_EXPERTS, seed) for task in tasks for seed in seeds],
    }
    return tables


def unique_runs(tables: dict[str, list[Run]]) -> list[Run]:
    """Every run once, in first-mention order (tables share runs, e.g. MTU N=4 on all tasks)."""
    return list(dict.fromkeys(run for runs in tables.values() for run in runs))
