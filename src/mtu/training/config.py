"""The training configuration: small dataclasses read from YAML, every problem reported in one error.

    >>> config = load_config("configs/shapes.yaml", {"train.max_steps": 100})

`load_config` (and `TrainConfig.from_dict`) collect unknown keys, wrong types, impossible values and
missing files across the whole file and raise a single `ValueError` listing them all, so a broken config
is fixed in one round trip instead of one error per run. See docs/training.md for the schema.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mtu.config import BUILTIN_TASKS, CONDITIONINGS, TaskSpec

METHODS = ("mtu", "single-task", "lora", "ia3", "full", "add-task")
SOURCE_TYPES = ("shapes", "hf", "jsonl", "folder")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
LOG_WITH = ("tensorboard", "none")
DEGRADATIONS = ("first_order", "second_order")
ROLES = ("image", "text", "target")

CACHE_MODES = ("none", "latents")
# Column names of the paper's datasets (override with `source.columns`): per conditioning, "degraded" for
# a task whose input image is made from the target (`TaskConfig.scale`), and per built-in task whose
# dataset names them otherwise (`TASK_COLUMNS`).
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "none": {"target": "image", "text": "caption"},  # COCO captions
    "image": {"image": "input_image", "text": "edit_prompt", "target": "edited_image"},  # InstructPix2Pix
    "degraded": {"target": "image", "text": "caption"},  # any high-res images; the low-res input is made on the fly
    "masked_image": {"target": "image", "text": "caption"},  # images + generated masks
}
TASK_COLUMNS: dict[str, dict[str, str]] = {
    "remove": {"image": "source_image", "text": "instruction", "target": "target_image"},  # GQA-Inpaint
}

# A string that can only be a hub repository id ("org/name"), not a local path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(value: str) -> bool:
    """True for "org/name" strings that do not exist locally: they are left to the hub client to resolve."""
    return bool(_HUB_ID.fullmatch(value)) and not Path(value).exists()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _need(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def _choice(problems: list[str], name: str, value: Any, options: tuple[str, ...]) -> None:
    _need(problems, value in options, f"{name}: {value!r} is not one of {list(options)}")


def _int_at_least(problems: list[str], name: str, value: Any, low: int) -> None:
    _need(problems, _is_int(value) and value >= low, f"{name}: must be an int >= {low}, got {value!r}")


@dataclass
class SourceConfig:
    """Where a task's examples come from.

    Args:
        type: "shapes" (procedural, exact pairs, generated per step), "hf" (a `datasets` hub name, a
            `save_to_disk` folder, or a folder of data files), "jsonl" (one JSON object per line; image
            columns are paths relative to the file), "folder" (images, captions in same-name .txt files).
        path: hub name, folder or file; unused for "shapes".
        name: the `datasets` configuration name ("hf" only).
        split: the split to read ("hf" only).
        columns: role -> column name, roles "image" (conditioning image), "text", "target"; missing roles
            take the paper's dataset's names (`DEFAULT_COLUMNS`).
    """

    type: str = "shapes"
    path: str | None = None
    name: str | None = None
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)

    def problems(self, where: str) -> list[str]:
        found: list[str] = []
        _choice(found, f"{where}.type", self.type, SOURCE_TYPES)
        if found:
            return found
        if self.type == "shapes":
            _need(found, self.path is None, f"{where}.path: a shapes source has no path (got {self.path!r})")
        elif not isinstance(self.path, str) or not self.path:
            found.append(f"{where}.path: a {self.type} source needs a path")
        elif not Path(self.path).expanduser().exists() and not (self.type == "hf" and is_hub_id(self.path)):
            kind = "file" if self.type == "jsonl" else "folder or hub dataset name" if self.type == "hf" else "folder"
            found.append(f"{where}.path: no such {kind}: {self.path}")
        if not isinstance(self.columns, dict):
            found.append(f"{where}.columns: expected a mapping role -> column, got {self.columns!r}")
        else:
            unknown = sorted(set(self.columns) - set(ROLES))
            _need(found, not unknown, f"{where}.columns: unknown roles {unknown}; roles are {list(ROLES)}")
        return found


@dataclass
class TaskConfig:
    """One task of the run.

    Args:
        weight: relative sampling weight (normalised over the tasks).
        source: where its examples come from.
        conditioning: for tasks that are not built in: "none", "image" or "masked_image".
        description: one line for humans (user tasks).
        sr_scale: image tasks: make the conditioning image by degrading the target by this factor
            (Real-ESRGAN style) and resizing it back up; by default the task's `TaskSpec.upscale` when it
            scales up (sr: 4), unset otherwise. A task that is not built in then scales up by it.
        degradation: "second_order" (two degradation rounds, the second milder; Real-ESRGAN) or
            "first_order", for `sr_scale` on real images. Shapes sr uses the world's own first-order chain.
        prompt: false trains the task with empty prompts (the paper's SR data has no captions; a Shapes
            caption names the whole scene, so with it sr could be answered without reading the image).
    """

    weight: float = 1.0
    source: SourceConfig = field(default_factory=SourceConfig)
    conditioning: str | None = None
    description: str = ""
    sr_scale: int | None = None
    degradation: str = "second_order"
    prompt: bool = True

    def spec(self, name: str) -> TaskSpec:
        if name in BUILTIN_TASKS and self.conditioning is None:
            return BUILTIN_TASKS[name]
        conditioning = self.conditioning or "none"
        upscale = self.sr_scale if conditioning == "image" and _is_int(self.sr_scale) and self.sr_scale > 1 else 1
        return TaskSpec(name, conditioning, description=self.description, upscale=upscale)

    def scale(self, name: str) -> int | None:
        """The degradation factor that makes this task's input image from the target, or None when its input
        image is read from data."""
        upscale = self.spec(name).upscale
        return self.sr_scale if self.sr_scale is not None else (upscale if upscale > 1 else None)

    def columns(self, name: str) -> dict[str, str]:
        conditioning = self.spec(name).conditioning
        if conditioning == "image" and self.scale(name):
            defaults = DEFAULT_COLUMNS["degraded"]
        else:
            defaults = TASK_COLUMNS.get(name, DEFAULT_COLUMNS[conditioning])
        return {**defaults, **(self.source.columns if isinstance(self.source.columns, dict) else {})}

    def problems(self, name: str) -> list[str]:
        where = f"tasks.{name}"
        found: list[str] = []
        if not isinstance(name, str) or not name.isidentifier():
            return [f"{where}: a task name must be an identifier such as 'edit', got {name!r}"]
        weight_ok = _is_number(self.weight) and self.weight >= 0
        _need(found, weight_ok, f"{where}.weight: must be a number >= 0, got {self.weight!r}")
        if name not in BUILTIN_TASKS and self.conditioning is None:
            found.append(
                f"{where}: {name!r} is not a built-in task ({sorted(BUILTIN_TASKS)}); declare its conditioning: "
                "none, image or masked_image"
            )
        if self.conditioning is not None and self.conditioning not in set(CONDITIONINGS) - {"custom"}:
            found.append(
                f"{where}.conditioning: {self.conditioning!r} is not one of ['image', 'masked_image', 'none'] "
                "('custom' channels need your own data code: use the Python API)"
            )
        if self.sr_scale is not None and (not _is_int(self.sr_scale) or self.sr_scale < 2):
            found.append(f"{where}.sr_scale: must be an int >= 2, got {self.sr_scale!r}")
        _choice(found, f"{where}.degradation", self.degradation, DEGRADATIONS)
        _need(found, isinstance(self.prompt, bool), f"{where}.prompt: must be true or false, got {self.prompt!r}")
        found += self.source.problems(f"{where}.source")
        if self.source.type == "hf" and importlib.util.find_spec("datasets") is None:
            found.append(f"{where}.source: type hf needs the `datasets` package (pip install datasets)")
        if not found:
            found += self._source_fits(name, where)
        return found

    def _source_fits(self, name: str, where: str) -> list[str]:
        spec = self.spec(name)
        if self.source.type == "shapes":
            from mtu.data.shapes.tasks import SR_SCALE, TASKS

            if name not in TASKS or spec != BUILTIN_TASKS.get(name):
                return [f"{where}.source: the shapes world only makes the built-in tasks {list(TASKS)}"]
            if self.sr_scale not in (None, SR_SCALE):
                return [f"{where}.sr_scale: shapes sr pairs are x{SR_SCALE}; got {self.sr_scale}"]
            return []
        if spec.conditioning == "image" and not self.scale(name) and self.source.type == "folder":
            return [
                f"{where}.source: a folder of images has no conditioning image for {name!r}; use jsonl / hf, or set sr_scale"
            ]
        return []


@dataclass
class MTUSection:
    """MTU layer sizes (see `mtu.MTUConfig`)."""

    num_experts: int = 4
    router_hidden_dim: int = 64
    task_embedding_dim: int = 64
    target_modules: list[str] | None = None

    def problems(self) -> list[str]:
        found = [
            f"mtu.{name}: must be a positive int, got {getattr(self, name)!r}"
            for name in ("num_experts", "router_hidden_dim", "task_embedding_dim")
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1
        ]
        targets = self.target_modules
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            found.append(f"mtu.target_modules: expected a list of regular expressions or null, got {targets!r}")
        return found


@dataclass
class AdapterSection:
    """LoRA / IA3 baselines: one adapter per task on each FFN's two linears.

    Args:
        rank: LoRA rank, or "auto": the rank whose trainable parameter count is closest to MTU's.
        alpha: LoRA alpha; null = the rank (scale 1).
        dropout: LoRA dropout.
    """

    rank: int | str = "auto"
    alpha: float | None = None
    dropout: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.rank != "auto" and (not _is_int(self.rank) or self.rank < 1):
            found.append(f"adapter.rank: must be 'auto' or an int >= 1, got {self.rank!r}")
        if self.alpha is not None and (not _is_number(self.alpha) or self.alpha <= 0):
            found.append(f"adapter.alpha: must be a positive number or null, got {self.alpha!r}")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            found.append(f"adapter.dropout: must be in [0, 1), got {self.dropout!r}")
        return found


@dataclass
class DataSection:
    """Batches and conditioning dropout.

    Args:
        resolution: image side in pixels (images are resized and centre-cropped); a multiple of 8.
        batch_size: samples per process per micro-batch.
        num_workers: DataLoader worker processes (0: load in the training process).
        text_dropout, image_dropout, both_dropout: probabilities of dropping only the text, only the
            conditioning image, or both, per sample (InstructPix2Pix uses 0.05 each). Dropped text is the
            empty prompt; a dropped image is a zero latent. Tasks without a conditioning image (t2i,
            inpaint) drop their text with probability text_dropout + both_dropout.
        max_skips: unreadable samples tolerated in a row before the run stops (a dataset that is mostly corrupt).
        pool_size: train on a fixed pool per task: Shapes tasks draw this many examples once (seeded by
            `pool_seed`); a dataset's pool is its records, their random parts (caption choice, degradation,
            mask) drawn once per record. null: a fresh example (Shapes) or fresh random parts every draw.
        pool_seed: the seed of the Shapes pools (independent of `seed`, so runs that differ only in
            their training seed share one pool and one latent cache).
        cache: "latents": encode every pool entry once with the frozen VAE and text encoder(s) and train
            from the stored latents (`mtu.training.cache`); "none": encode every step. Needs a finite pool.
        cache_dir: where latent caches live (null: $MTU_CACHE_DIR, else ~/.cache/mtu/latents).
    """

    resolution: int = 64
    batch_size: int = 8
    num_workers: int = 0
    text_dropout: float = 0.05
    image_dropout: float = 0.05
    both_dropout: float = 0.05
    max_skips: int = 50
    pool_size: int | None = None
    pool_seed: int = 0
    cache: str = "none"
    cache_dir: str | None = None

    def problems(self) -> list[str]:
        found = []
        if self.pool_size is not None:
            _int_at_least(found, "data.pool_size", self.pool_size, 1)
        _int_at_least(found, "data.pool_seed", self.pool_seed, 0)
        _choice(found, "data.cache", self.cache, CACHE_MODES)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            found.append(f"data.cache_dir: expected a folder path or null, got {self.cache_dir!r}")
        if not _is_int(self.resolution) or self.resolution < 8 or self.resolution % 8:
            found.append(f"data.resolution: must be a positive multiple of 8, got {self.resolution!r}")
        for name, low in (("batch_size", 1), ("num_workers", 0), ("max_skips", 1)):
            _int_at_least(found, f"data.{name}", getattr(self, name), low)
        probabilities = [self.text_dropout, self.image_dropout, self.both_dropout]
        if not all(_is_number(p) and p >= 0 for p in probabilities) or sum(probabilities) > 1:
            found.append(
                f"data: text_dropout, image_dropout and both_dropout must be >= 0 and sum to <= 1, got {probabilities}"
            )
        return found


@dataclass
class TrainSection:
    """Optimisation. Steps are optimizer steps; one takes batch_size x processes x accumulation samples.

    Args:
        max_steps: optimizer steps of the whole run (the LR schedule spans them).
        gradient_accumulation_steps: micro-batches per optimizer step.
        learning_rate, lr_scheduler, lr_warmup_steps: diffusers `get_scheduler` settings.
        adam_beta1, adam_beta2, adam_epsilon, weight_decay: AdamW.
        max_grad_norm: gradient clipping (null: none).
        mixed_precision: "no", "fp16" or "bf16" (accelerate autocast; frozen parts in that dtype).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
        ema_decay: keep an exponential moving average of the trainable weights (null: none); the final
            model folder holds the EMA weights.
        lr_multipliers: regular expression over trainable parameter names -> factor on learning_rate (the
            first match wins), e.g. {"conv_in|task_embedding|router": 10.0}: a zero-initialised input
            pathway or router can learn faster than the experts copied from the base.
    """

    max_steps: int = 1000
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = None
    lr_multipliers: dict[str, float] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        multipliers = self.lr_multipliers
        if not isinstance(multipliers, dict) or not all(
            isinstance(k, str) and _is_number(v) and v > 0 for k, v in multipliers.items()
        ):
            found.append(f"train.lr_multipliers: expected a mapping regex -> number > 0, got {multipliers!r}")
        for name, low in (("max_steps", 1), ("gradient_accumulation_steps", 1), ("lr_warmup_steps", 0)):
            _int_at_least(found, f"train.{name}", getattr(self, name), low)
        for name in ("learning_rate", "adam_epsilon"):
            value = getattr(self, name)
            _need(found, _is_number(value) and value > 0, f"train.{name}: must be a number > 0, got {value!r}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            _need(found, _is_number(value) and 0 <= value < 1, f"train.{name}: must be in [0, 1), got {value!r}")
        decay_ok = _is_number(self.weight_decay) and self.weight_decay >= 0
        _need(found, decay_ok, f"train.weight_decay: must be >= 0, got {self.weight_decay!r}")
        if self.max_grad_norm is not None and (not _is_number(self.max_grad_norm) or self.max_grad_norm <= 0):
            found.append(f"train.max_grad_norm: must be a number > 0 or null, got {self.max_grad_norm!r}")
        _choice(found, "train.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        _choice(found, "train.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        checkpointing = self.gradient_checkpointing
        message = f"train.gradient_checkpointing: must be true or false, got {checkpointing!r}"
        _need(found, isinstance(checkpointing, bool), message)
        if self.ema_decay is not None and (not _is_number(self.ema_decay) or not 0 < self.ema_decay < 1):
            found.append(f"train.ema_decay: must be in (0, 1) or null, got {self.ema_decay!r}")
        return found


@dataclass
class CheckpointSection:
    """Args: every: optimizer steps between checkpoints; keep: how many checkpoints to keep (oldest deleted)."""

    every: int = 500
    keep: int = 3

    def problems(self) -> list[str]:
        found: list[str] = []
        for name in ("every", "keep"):
            _int_at_least(found, f"checkpoint.{name}", getattr(self, name), 1)
        return found


@dataclass
class LoggingSection:
    """Feedback.

    Args:
        every: optimizer steps between log records (tensorboard, train_log.jsonl).
        log_with: "tensorboard" or "none".
        sample_every: optimizer steps between PNG sample grids per task (0: never).
        sample_count: examples per task in a grid.
        sample_steps: DDIM steps of the sampler.
        guidance_scale: text classifier-free guidance of the samples (1: none).
        image_guidance_scale: image guidance of edit/sr/remove samples (InstructPix2Pix; used when
            guidance_scale > 1).
    """

    every: int = 10
    log_with: str = "tensorboard"
    sample_every: int = 0
    sample_count: int = 4
    sample_steps: int = 25
    guidance_scale: float = 1.0
    image_guidance_scale: float = 1.5

    def problems(self) -> list[str]:
        found = []
        for name, low in (("every", 1), ("sample_every", 0), ("sample_count", 1), ("sample_steps", 1)):
            _int_at_least(found, f"logging.{name}", getattr(self, name), low)
        _choice(found, "logging.log_with", self.log_with, LOG_WITH)
        if self.log_with == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            found.append("logging.log_with: tensorboard is not installed (pip install tensorboard), or set log_with: none")
        for name in ("guidance_scale", "image_guidance_scale"):
            value = getattr(self, name)
            _need(found, _is_number(value) and value >= 1, f"logging.{name}: must be a number >= 1, got {value!r}")
        return found


SECTIONS = {
    "mtu": MTUSection,
    "adapter": AdapterSection,
    "data": DataSection,
    "train": TrainSection,
    "checkpoint": CheckpointSection,
    "logging": LoggingSection,
}


@dataclass
class TrainConfig:
    """A training run.

    Args:
        model: base model: a shipped name ("shapes-base"), a local diffusers pipeline folder, or a hub id.
        tasks: task name -> `TaskConfig`, in task-id order.
        method: "mtu", "single-task" (MTU's trainable parts, one task), "lora" or "ia3" (one adapter per
            task on the FFNs, plus MTU's task input convs and norms), "full", or "add-task" (new tasks on
            the trained MTU model `extends`, only their parts trained: `mtu.training.extend`).
        extends: add-task only: the MTU folder the tasks are added to; `tasks` lists the new tasks only.
        output_dir: run folder: checkpoints/, model/, logs/, samples/, train_log.jsonl.
        seed: seeds the model init and the data stream; null draws one (recorded in checkpoints).
    """

    model: str = "shapes-base"
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    method: str = "mtu"
    extends: str | None = None
    output_dir: str = "runs/mtu"
    seed: int | None = None
    mtu: MTUSection = field(default_factory=MTUSection)
    adapter: AdapterSection = field(default_factory=AdapterSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def task_specs(self) -> list[TaskSpec]:
        return [task.spec(name) for name, task in self.tasks.items()]

    def problems(self) -> list[str]:
        """Every problem of this config (empty when it is valid)."""
        found: list[str] = []
        if not isinstance(self.model, str) or not self.model:
            found.append(f"model: expected a shipped name, folder or hub id, got {self.model!r}")
        else:
            found += _model_problems(self.model)
        _choice(found, "method", self.method, METHODS)
        from mtu.training.extend import extends_problems

        found += extends_problems(self)
        output_ok = isinstance(self.output_dir, str) and bool(self.output_dir)
        _need(found, output_ok, f"output_dir: expected a path, got {self.output_dir!r}")
        seed_ok = self.seed is None or _is_int(self.seed) and self.seed >= 0
        _need(found, seed_ok, f"seed: must be an int >= 0 or null, got {self.seed!r}")
        if not self.tasks:
            found.append("tasks: at least one task is needed, e.g. tasks: {t2i: {source: {type: shapes}}}")
        for name, task in self.tasks.items():
            found += task.problems(name)
        weights = [t.weight for t in self.tasks.values() if _is_number(t.weight)]
        if self.tasks and len(weights) == len(self.tasks) and sum(weights) <= 0:
            found.append("tasks: the sampling weights sum to 0; give at least one task a positive weight")
        if self.method in ("single-task", "full") and len(self.tasks) != 1:
            found.append(
                f"method: {self.method} trains exactly one task, got {len(self.tasks)} ({self.task_names}); "
                "run once per task, or use method: mtu"
            )
        for name in SECTIONS:
            found += getattr(self, name).problems()
        shapes = [name for name, task in self.tasks.items() if task.source.type == "shapes"]
        if self.data.cache == "latents" and self.data.pool_size is None and shapes:
            found.append(
                f"data.cache: latents needs a finite pool for the shapes tasks {shapes}; set data.pool_size "
                "(e.g. 8192 examples per task)"
            )
        return found

    def check(self) -> None:
        """Raise one ValueError listing every problem, if there is any."""
        raise_problems(self.problems())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build and validate a config from plain data (parsed YAML); one ValueError lists every problem."""
        config, found = cls.parse(data)
        raise_problems(found)
        return config

    @classmethod
    def parse(cls, data: dict[str, Any]) -> tuple["TrainConfig", list[str]]:
        """(config, every problem found): unknown keys and non-mappings as well as invalid values."""
        found: list[str] = []
        if not isinstance(data, dict):
            raise ValueError(f"a training config is a mapping of sections, got {type(data).__name__}")
        top = _known(cls, data, "config", found)
        tasks = {}
        raw_tasks = top.pop("tasks", None) or {}
        if not isinstance(raw_tasks, dict):
            found.append(f"tasks: expected a mapping task name -> settings, got {type(raw_tasks).__name__}")
            raw_tasks = {}
        for name, raw in raw_tasks.items():
            values = _known(TaskConfig, raw if raw is not None else {}, f"tasks.{name}", found)
            source = _known(SourceConfig, values.get("source") or {}, f"tasks.{name}.source", found)
            tasks[name] = TaskConfig(**{**values, "source": SourceConfig(**source)})
        sections = {
            name: section(**_known(section, top.pop(name, None) or {}, name, found)) for name, section in SECTIONS.items()
        }
        config = cls(tasks=tasks, **top, **sections)
        return config, found + config.problems()


def _known(cls: type, data: Any, where: str, found: list[str]) -> dict[str, Any]:
    """The entries of `data` that are fields of `cls`; unknown keys and non-mappings become problems."""
    if not isinstance(data, dict):
        found.append(f"{where}: expected a mapping, got {data!r}")
        return {}
    names = [f.name for f in fields(cls)]
    unknown = sorted(str(key) for key in set(data) - set(names))
    if unknown:
        found.append(f"{where}: unknown keys {unknown}; allowed: {names}")
    return {key: value for key, value in data.items() if key in names}


def _model_problems(model: str) -> list[str]:
    from mtu.assets import SHIPPED_MODELS, resolve_model_path

    if is_hub_id(model) and model not in SHIPPED_MODELS:
        return []
    try:
        path = resolve_model_path(model)
    except FileNotFoundError as error:
        return [f"model: {error}"]
    if not (path / "model_index.json").is_file() or not (path / "unet").is_dir():
        return [f"model: {path} is not a diffusers pipeline folder (model_index.json and unet/ expected)"]
    return []


def raise_problems(found: list[str]) -> None:
    """One ValueError, on one line, numbering every problem."""
    if found:
        listed = "; ".join(f"({i}) {problem}" for i, problem in enumerate(found, 1))
        raise ValueError(f"invalid training config, {len(found)} problem{'s' * (len(found) > 1)}: {listed}")


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys ("train.max_steps") in a copy of parsed YAML; None values are skipped."""
    import copy

    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config, apply dotted-key overrides, validate.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: unreadable YAML, or the list of every problem in the config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training config at {path}; see configs/shapes.yaml for an example")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from None
    return TrainConfig.from_dict(apply_overrides(data, overrides or {}))
