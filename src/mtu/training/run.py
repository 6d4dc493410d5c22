"""Setting up a training run: the accelerator, the model and its optimizer, the data seed, and resuming.

`build_run` makes a `Run`, everything the step loop touches; `restore` loads a checkpoint into it after
checking that the checkpoint belongs to this kind of run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mtu.baseline_models import AdapterSpec
from mtu.training.checkpoint import (
    Progress,
    check_loadable,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    saved_config,
)
from mtu.training.components import Components, load_components
from mtu.training.config import TrainConfig
from mtu.training.counts import parameter_counts, trainable_count
from mtu.training.ema import TrainableEMA
from mtu.training.methods import build_model, mtu_config_of
from mtu.utils.signals import StopRequest

# Settings that must not change when a run is resumed: the weights would not fit or would mean something else.
FIXED_ON_RESUME = ("model", "method", "extends", "mtu", "adapter")


@dataclass
class Run:
    """Everything the step loop touches."""

    config: TrainConfig
    accelerator: object
    components: Components
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped when distributed)
    optimizer: object
    lr_scheduler: object
    noise_scheduler: object
    progress: Progress
    ema: TrainableEMA | None
    adapter: AdapterSpec | None
    output_dir: Path
    stop: StopRequest = field(default_factory=StopRequest)
    training_sources: dict = field(default_factory=dict)  # task -> what batches draw from (pools, caches)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def task_names(self) -> list[str]:
        return self.config.task_names


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    output_dir = Path(config.output_dir)
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"))
    # `accelerate launch --cpu --num_processes N` starts one process unless MPI is set up; a torchrun-style
    # launch (`accelerate launch --multi_gpu --num_processes N`) on a machine without CUDA runs N CPU
    # processes over gloo once accelerate is told to use the CPU.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=cpu,
        mixed_precision=config.train.mixed_precision,
        log_with=None if config.logging.log_with == "none" else config.logging.log_with,
        project_config=project,
        # Our scheduler counts optimizer steps; accelerate would otherwise step it once per process.
        step_scheduler_with_optimizer=False,
        # A mixed batch leaves other tasks' norms / convs / adapters without gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def adapter_spec(config: TrainConfig, unet_config) -> tuple[AdapterSpec | None, dict | None]:
    """The LoRA / IA3 adapter of this config (rank "auto" resolved) and the parameter counts behind it."""
    method = config.training_method
    if not method.adapters:
        return None, None
    section = config.adapter
    counts = parameter_counts(unet_config, mtu_config_of(config), section.rank, section.alpha)
    rank = counts["lora_rank"] if method.ranked else 0
    return AdapterSpec(config.method, rank, section.alpha, section.dropout), counts


def build_run(config: TrainConfig, accelerator) -> Run:
    """Load the base model, build the method's model on it, and prepare model, optimizer and LR schedule."""
    from diffusers import DDPMScheduler

    components = load_components(config.model, config.data.resolution)
    adapter, counts = adapter_spec(config, components.unet.config)
    model = build_model(components.unet, config.method, mtu_config_of(config), adapter, config.extends)
    note = f"; LoRA rank {adapter.rank}" if config.training_method.ranked else ""
    note += f"; MTU would train {counts['mtu']:,}" if counts else ""
    count = trainable_count(model)
    accelerator.print(f"trainable parameters: {count:,} ({config.method}, tasks {config.task_names}{note})")
    if config.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.train.mixed_precision, torch.float32)
    components.to(accelerator.device, weight_dtype)
    model.to(accelerator.device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer, lr_scheduler = make_optimizer(model, config.train)
    prepared, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema = TrainableEMA(parameters, config.train.ema_decay) if config.train.ema_decay is not None else None
    noise_scheduler = DDPMScheduler.from_config(components.scheduler_config)
    return Run(
        config,
        accelerator,
        components,
        prepared,
        optimizer,
        lr_scheduler,
        noise_scheduler,
        Progress(),
        ema,
        adapter,
        Path(config.output_dir),
    )


def make_optimizer(model: torch.nn.Module, section) -> tuple[torch.optim.Optimizer, object]:
    """AdamW over the trainable parameters (`parameter_groups`) and its diffusers LR schedule."""
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(
        parameter_groups(model, section.learning_rate, section.lr_multipliers),
        lr=section.learning_rate,
        betas=(section.adam_beta1, section.adam_beta2),
        eps=section.adam_epsilon,
        weight_decay=section.weight_decay,
        fused=True,  # one kernel for all tensors; measured: a cached Shapes step 0.41 -> 0.39 s on one CPU thread
    )
    lr_scheduler = get_scheduler(
        section.lr_scheduler, optimizer, num_warmup_steps=section.lr_warmup_steps, num_training_steps=section.max_steps
    )
    return optimizer, lr_scheduler


def parameter_groups(model: torch.nn.Module, learning_rate: float, multipliers: dict[str, float]) -> list[dict]:
    """AdamW groups: trainable parameters at `learning_rate` times the first matching multiplier (else 1).

    A multiplier that matches no trainable parameter is an error, before any step: a typo in its pattern would
    otherwise train at the plain rate without a word.
    """
    import re

    groups: dict[float, list] = {}
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    used = set()
    for name, parameter in trainable:
        pattern = next((pattern for pattern in multipliers if re.search(pattern, name)), None)
        used.add(pattern)
        groups.setdefault(float(multipliers.get(pattern, 1.0)), []).append(parameter)
    unused = [pattern for pattern in multipliers if pattern not in used]
    if unused:
        examples = [name for name, _ in trainable[:: max(len(trainable) // 3, 1)]][:3]
        raise ValueError(
            f"train.lr_multipliers: {unused} match no trainable parameter (or only ones an earlier key took); "
            f"the patterns are searched in names such as {examples}: fix or remove these keys"
        )
    return [{"params": params, "lr": learning_rate * factor} for factor, params in groups.items()]


def resolve_seed(config: TrainConfig, accelerator) -> int:
    """The data seed: the config's, or one drawn now and shared by every process (recorded in checkpoints)."""
    from accelerate.utils import broadcast_object_list, set_seed

    if config.seed is not None:
        set_seed(config.seed)
        return config.seed
    drawn = [int(np.random.SeedSequence().generate_state(1)[0])]
    return broadcast_object_list(drawn)[0] if accelerator.num_processes > 1 else drawn[0]


def restore(run: Run, resume: str | None) -> None:
    """Load the checkpoint `resume` names, after checking it belongs to this kind of run."""
    existing = list_checkpoints(run.output_dir)
    if resume is None:
        if existing:
            raise ValueError(
                f"{run.output_dir} already has checkpoints (latest: {existing[-1].name}); pass --resume latest to "
                "continue that run, or choose another --output-dir"
            )
        return
    checkpoint = find_checkpoint(resume, run.output_dir)
    if checkpoint is None:
        run.accelerator.print(f"--resume {resume}: no checkpoint in {run.output_dir} yet; starting a new run")
        return
    check_loadable(checkpoint)  # an older pickle checkpoint is refused before anything in it is read
    _check_compatible(run.config, checkpoint)
    load_checkpoint(checkpoint, run)
    run.accelerator.print(f"resumed from {checkpoint} at step {run.progress.step}")


def _check_compatible(config: TrainConfig, checkpoint: Path) -> None:
    saved = saved_config(checkpoint)
    current = config.to_dict()
    changed = [key for key in FIXED_ON_RESUME if saved.get(key) != current.get(key)]
    # Tasks: their names, order and layouts fix the weights' shapes; weights and sources may change.
    layouts = [[(name, task.get("conditioning")) for name, task in c["tasks"].items()] for c in (saved, current)]
    if layouts[0] != layouts[1]:
        changed.append("tasks (names, order or conditioning)")
    if (saved.get("train", {}).get("ema_decay") is None) != (config.train.ema_decay is None):
        changed.append("train.ema_decay (on/off)")  # the checkpoint holds an EMA exactly when the run had one
    if changed:
        raise ValueError(
            f"cannot resume from {checkpoint}: {changed} differ from the run that wrote it; "
            "resume with its own config (its train_config.yaml), or start a new run"
        )


def release_state(accelerator) -> None:
    """Let a later `train` call in this process use other accelerate settings (e.g. mixed precision).

    accelerate keeps its state in a process-wide singleton; a single-process run can drop it. A distributed
    process keeps it (its process group lives as long as the process).
    """
    from accelerate.state import AcceleratorState

    if accelerator.num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=True)


def tracker_config(values: dict, prefix: str = "") -> dict:
    """Nested config -> {"train.learning_rate": 1e-4, ...} with tensorboard-friendly scalar values."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(tracker_config(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
