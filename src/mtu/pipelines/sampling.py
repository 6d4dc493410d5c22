"""How `MTUPipeline` applies a model's stored sampler settings (`mtu.sampler`) to the calls that leave them out.

A task's stored settings fill in what a call does not give: the guidance scales of each request, the steps
of a denoising loop and its scheduler. A caller's explicit value always wins, and so does a scheduler the
caller set on the pipeline (`pipe.scheduler = ...`): the stored scheduler only replaces the one the
pipeline was loaded with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from mtu.pipelines.requests import MTURequest
from mtu.sampler import DEFAULT_SAMPLER, SamplerSettings


def build_scheduler(name: str, config):
    """The diffusers scheduler class `name` built from `config` (the base pipeline's); ValueError if unknown."""
    import diffusers

    scheduler_class = getattr(diffusers, name, None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, diffusers.SchedulerMixin)):
        raise ValueError(f"unknown scheduler {name!r} in the stored sampler settings: name a diffusers scheduler class")
    return scheduler_class.from_config(config)


class StoredSamplers:
    """Mixin of `MTUPipeline`: the per-task sampler settings of the loaded model (`samplers`)."""

    samplers: dict[str, SamplerSettings]
    _loaded_scheduler = None  # the scheduler the stored settings may replace (not one the caller set)

    def use_samplers(self, samplers: dict[str, SamplerSettings], scheduler_given: bool = False) -> None:
        """Adopt a model's stored settings; when every task names one scheduler, it becomes `pipe.scheduler`.

        Args:
            scheduler_given: the caller chose the scheduler (`from_pretrained(..., scheduler=...)`): keep it.
        """
        self.samplers = dict(samplers)
        if scheduler_given:
            self._loaded_scheduler = None
            return
        names = {settings.scheduler for settings in samplers.values()} - {None}
        if len(names) == 1 and type(self.scheduler).__name__ not in names:
            self.scheduler = build_scheduler(names.pop(), self.scheduler.config)
        self._loaded_scheduler = self.scheduler

    def sampler_for(self, task: str, fallback: SamplerSettings = DEFAULT_SAMPLER) -> SamplerSettings:
        """The stored settings of `task`, else `fallback` (a command's own defaults; the pipeline's: diffusers')."""
        return getattr(self, "samplers", {}).get(task, fallback)

    def fill_guidance(self, request: MTURequest) -> MTURequest:
        """`request` with the guidance scales it leaves out (None) taken from its task's settings."""
        settings = self.sampler_for(request.task)
        return replace(
            request,
            guidance_scale=settings.guidance_scale if request.guidance_scale is None else request.guidance_scale,
            image_guidance_scale=settings.image_guidance_scale
            if request.image_guidance_scale is None
            else request.image_guidance_scale,
        )

    def loop_steps(self, tasks: list[str], num_inference_steps: int | None) -> int:
        """The steps of one loop: the caller's, else the tasks' stored ones, which must agree."""
        if num_inference_steps is not None:
            return num_inference_steps
        steps = {task: self.sampler_for(task).num_inference_steps for task in tasks}
        if len(set(steps.values())) > 1:
            raise ValueError(
                f"these tasks are stored with different step counts {steps}: pass num_inference_steps, "
                "or run them separately"
            )
        return next(iter(steps.values()), DEFAULT_SAMPLER.num_inference_steps)

    def scheduler_name(self, task: str) -> str:
        """The scheduler class a loop of `task` runs with (what a batching server groups requests by)."""
        stored = self.sampler_for(task).scheduler
        if stored is None or self._loaded_scheduler is None or self.scheduler is not self._loaded_scheduler:
            return type(self.scheduler).__name__
        return stored

    @contextmanager
    def task_scheduler(self, tasks: list[str]) -> Iterator[None]:
        """Run a loop with the scheduler its tasks are stored with, when that is not the pipeline's own."""
        names = {self.scheduler_name(task) for task in tasks}
        if len(names) > 1:
            raise ValueError(f"tasks {sorted(set(tasks))} are stored with different schedulers {sorted(names)}: "
                             "run them separately")  # fmt: skip
        current = type(self.scheduler).__name__
        name = names.pop() if names else current
        if name == current:
            yield
            return
        cache = self.__dict__.setdefault("_task_schedulers", {})
        if name not in cache:
            cache[name] = build_scheduler(name, self.scheduler.config)
        loaded = self.scheduler
        self.scheduler = cache[name]
        try:
            yield
        finally:
            self.scheduler = loaded
            self._loaded_scheduler = loaded
