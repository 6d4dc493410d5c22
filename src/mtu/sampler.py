"""Sampler settings stored with a model: per task, the scheduler, steps and guidance it is meant to run with.

An MTU folder (or an `mtu train` run's model/) may hold `sampler.json`, one entry per task:

    {"edit": {"scheduler": "DDIMScheduler", "num_inference_steps": 25, "guidance_scale": 1.0,
              "image_guidance_scale": 1.5}, ...}

`MTUPipeline.from_pretrained` reads it, and `MTUPipeline.__call__`, `mtu generate`, `mtu serve` and `mtu eval`
use a task's entry for every setting the caller leaves out. A task without an entry (or a folder without the
file) keeps the caller's defaults (for `MTUPipeline.__call__`: diffusers' 50 steps, guidance 7.5). Training
writes the file from the sampler its samples use, the reproduction from the sampler it evaluates with;
`save_sampler` writes one by hand:

    >>> from mtu.sampler import SamplerSettings, save_sampler
    >>> save_sampler("my-mtu", {"t2i": SamplerSettings("DDIMScheduler", 30, 5.0)})

This module imports only the standard library and `mtu.utils.limits`; the scheduler name is checked against
diffusers when a pipeline builds it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mtu.assets import SHAPES_BASE_SAMPLER
from mtu.utils.limits import PIPELINE_NAMES, check_settings

SAMPLER_NAME = "sampler.json"


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample one task.

    Args:
        scheduler: a diffusers scheduler class name ("DDIMScheduler"), built from the base pipeline's scheduler
            config; None keeps the pipeline's scheduler.
        num_inference_steps: denoising steps.
        guidance_scale: text classifier-free guidance; off at <= 1.
        image_guidance_scale: image guidance of image-conditioned tasks (InstructPix2Pix); used when
            guidance_scale > 1 and this is >= 1.
        empty_prompt: the task was trained with empty prompts (uncaptioned data: the Shapes sr, as the paper's SR
            data): a chat request's words ("upscale this") are a command to it, not a caption, so `mtu serve`
            sends it an empty prompt. Explicit prompts in the Python API and `mtu generate` are sent as given.
    """

    scheduler: str | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    empty_prompt: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.empty_prompt, bool):
            raise ValueError(f"empty_prompt must be true or false, got {self.empty_prompt!r}")
        if self.scheduler is not None and not (isinstance(self.scheduler, str) and self.scheduler.isidentifier()):
            raise ValueError(f"scheduler must be a diffusers scheduler class name, got {self.scheduler!r}")
        checked = check_settings(
            PIPELINE_NAMES,
            steps=self.num_inference_steps,
            guidance=self.guidance_scale,
            image_guidance=self.image_guidance_scale,
        )
        object.__setattr__(self, "num_inference_steps", checked["steps"])  # frozen; 25.0 read from JSON is 25

    def replace(self, **overrides) -> SamplerSettings:
        """These settings with the `overrides` that are not None (a caller's explicit choices)."""
        return SamplerSettings(**{**asdict(self), **{k: v for k, v in overrides.items() if v is not None}})

    def describe(self) -> str:
        """One line for `mtu info` and logs."""
        scheduler = self.scheduler or "the base pipeline's scheduler"
        return (
            f"{scheduler}, {self.num_inference_steps} steps, guidance {self.guidance_scale:g}, "
            f"image guidance {self.image_guidance_scale:g}"
        )


# What `MTUPipeline.__call__` uses for a task without stored settings: diffusers' defaults.
DEFAULT_SAMPLER = SamplerSettings()


# What the Shapes models sample with when their folder stores no settings (`mtu.assets.SHAPES_BASE_SAMPLER`:
# 25 steps, text guidance 1, i.e. off) and image guidance 1.5; None keeps the pipeline's scheduler. Evaluation,
# `mtu generate`, `mtu serve` and the reproduction's shipped sampler all start from it.
SHAPES_SAMPLER = SamplerSettings(**SHAPES_BASE_SAMPLER, image_guidance_scale=1.5)


def load_sampler(folder: str | Path, tasks: list[str] | None = None) -> dict[str, SamplerSettings]:
    """The stored settings of `folder` by task ({} without `sampler.json`); ValueError naming the file for a bad
    one, or for a task not in `tasks` (a misspelt task would otherwise be ignored without a word)."""
    path = Path(folder) / SAMPLER_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("expected an object of tasks, each an object of sampler settings")
        allowed = {f.name for f in fields(SamplerSettings)}
        for task, values in data.items():
            if set(values) - allowed:
                raise ValueError(f"task {task!r} has unknown keys {sorted(set(values) - allowed)}; allowed {allowed}")
        samplers = {task: SamplerSettings(**values) for task, values in data.items()}
    except ValueError as error:  # JSON, UTF-8 and value errors alike: name the file
        raise ValueError(f"{path}: {error}") from None
    unknown = sorted(set(samplers) - set(tasks)) if tasks is not None else []
    if unknown:
        raise ValueError(f"{path} has settings for {unknown}, which the model does not serve ({tasks}): remove them")
    return samplers


def save_sampler(folder: str | Path, samplers: dict[str, SamplerSettings]) -> Path:
    """Write `sampler.json` into `folder` (atomically); returns its path."""
    from mtu.utils.outputs import write_text_atomic

    path = Path(folder) / SAMPLER_NAME
    data = {task: asdict(settings) for task, settings in samplers.items()}
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")
    return path


def same_for_tasks(tasks: list[str], settings: SamplerSettings) -> dict[str, SamplerSettings]:
    """One sampler for every task (what training and the reproduction evaluate with)."""
    return {task: settings for task in tasks}
