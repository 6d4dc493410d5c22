"""The training methods of `mtu train`: one enum, and one table of what each trains, loads, mixes and exports.

Every decision that depends on the method reads a property here (`Method("lora").mixes_tasks`), never the
method's name; adding a method is one member and one row of `METHODS`. The names are the strings of the
training config (`method: lora`) and of a run's `training_method.json`, so `Method` is a `StrEnum`: a member
equals, hashes and prints as its string, and files stay as they were.

| method | trains | its model/ folder loads as | mixes tasks | exports |
|---|---|---|---|---|
| mtu | experts, routers, task embeddings, norms, input convs | an MTU folder | yes | yes |
| single-task | the same parts, for one task | an MTU folder | yes | yes |
| add-task | the new tasks' embeddings, input convs and norms | an MTU folder | yes | yes |
| lora / ia3 | one peft adapter per task on each FFN, plus the task layers | task layers + adapters | no | no |
| full | every denoiser weight, for one task, plus the task layers | task layers + denoiser | yes | yes |

Standard library only: the config layer (`mtu.training.config`, `mtu.model_sizes`) reads it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Weights(enum.StrEnum):
    """What a method's model holds beyond MTU's task layers, and so how its folder loads (`mtu.loading`)."""

    EXPERTS = "experts"  # upcycled FFNs (experts + routers): the folder is a plain MTU folder
    ADAPTERS = "adapters"  # per-task peft adapters on the FFNs: adapters.safetensors
    DENOISER = "denoiser"  # every denoiser weight: denoiser.safetensors


@dataclass(frozen=True)
class MethodSpec:
    """What one training method is.

    Args:
        summary: what the model is, in one line (`mtu info`).
        trains: what trains, in words (the docs, `mtu train --dry-run`).
        weights: what its model holds beyond the task layers (`Weights`).
        one_task: it trains exactly one task (the config must list one).
        extends: it adds tasks to a trained MTU model named by the config's `extends`.
        ranked: its adapter has a rank (>= 1), chosen to match MTU's trainable count when "auto".
    """

    summary: str
    trains: str
    weights: Weights
    one_task: bool = False
    extends: bool = False
    ranked: bool = False


class Method(enum.StrEnum):
    """A training method; `Method.parse` reads one from a config or a file with a message naming the options."""

    MTU = "mtu"
    SINGLE_TASK = "single-task"
    LORA = "lora"
    IA3 = "ia3"
    FULL = "full"
    ADD_TASK = "add-task"

    @classmethod
    def parse(cls, value: object, where: str = "method") -> Method:
        """`value` as a `Method`; ValueError listing the valid names otherwise."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise ValueError(f"{where}: {value!r} is not one of {[m.value for m in cls]}") from None

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self]

    @property
    def trains(self) -> str:
        return self.spec.trains

    @property
    def has_experts(self) -> bool:
        """Its model has experts and routers: the folder loads as an MTU folder (re-upcycled, then weights)."""
        return self.spec.weights is Weights.EXPERTS

    @property
    def adapters(self) -> bool:
        """Per-task peft adapters: the model switches whole to one task's adapter (`activate`)."""
        return self.spec.weights is Weights.ADAPTERS

    @property
    def whole_denoiser(self) -> bool:
        """Every denoiser weight trains and is saved."""
        return self.spec.weights is Weights.DENOISER

    @property
    def mixes_tasks(self) -> bool:
        """One forward (and one denoising loop, one training batch) can serve several tasks."""
        return not self.adapters

    @property
    def exports(self) -> bool:
        """It folds into one stock denoiser per task (`MTUModel.export`, ONNX, OpenVINO, single file)."""
        return not self.adapters

    @property
    def one_task(self) -> bool:
        return self.spec.one_task

    @property
    def extends(self) -> bool:
        return self.spec.extends

    @property
    def ranked(self) -> bool:
        return self.spec.ranked


_TASK_PARTS = "task embeddings, task norms, task input convs"
_ADAPTER = "one peft adapter per task on each FFN's ff.net.0.proj and ff.net.2, plus the task norms and input convs"

METHODS: dict[Method, MethodSpec] = {
    Method.MTU: MethodSpec(
        "MTU: experts and a router per FFN, shared by every task",
        f"experts (the FFN weights), routers, {_TASK_PARTS}",
        Weights.EXPERTS,
    ),
    Method.SINGLE_TASK: MethodSpec(
        "MTU trained on one task",
        f"experts, routers, {_TASK_PARTS}, for one task",
        Weights.EXPERTS,
        one_task=True,
    ),
    Method.LORA: MethodSpec(
        "LoRA baseline: one low-rank adapter per task on each FFN, no experts",
        f"LoRA: {_ADAPTER}",
        Weights.ADAPTERS,
        ranked=True,
    ),
    Method.IA3: MethodSpec(
        "IA3 baseline: one (IA)^3 adapter per task on each FFN, no experts",
        f"(IA)^3: {_ADAPTER}",
        Weights.ADAPTERS,
    ),
    Method.FULL: MethodSpec(
        "full fine-tune of the whole denoiser, no experts",
        "every denoiser weight, for one task, plus the task layers",
        Weights.DENOISER,
        one_task=True,
    ),
    Method.ADD_TASK: MethodSpec(
        "MTU with tasks added after training",
        "the new tasks' embeddings, input convs and norms on a trained MTU model; the rest stays frozen",
        Weights.EXPERTS,
        extends=True,
    ),
}


@dataclass(frozen=True)
class AdapterSpec:
    """The adapter of an adapter method's run (`training_method.json`): peft method, rank and alpha (LoRA)."""

    method: str
    rank: int = 0
    alpha: float | None = None
    dropout: float = 0.0


BASELINES = tuple(method for method in Method if not method.has_experts)  # the paper's baselines: no experts


def method_of(value: str | None) -> Method | None:
    """A run's method as stored (`training_method.json`), or None for a folder no run wrote."""
    return None if value is None else Method.parse(value)
