"""The demo's logic without the web page: a chat request in, an image (or a `RequestError`) out."""

from __future__ import annotations

import numbers
import random
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import PIL.Image
import torch

from mtu.pipelines import MTURequest
from mtu.sampler import SHAPES_SAMPLER
from mtu.serve.batching import BatchWorker, ServerBusy
from mtu.serve.guess import guess_task
from mtu.serve.limits import RequestError, ServeLimits
from mtu.utils.limits import check_settings, scheduler_max_steps

AUTO = "auto"
SERVER_NAMES = {"image_guidance": "image guidance", "steps": "steps", "guidance": "guidance", "seed": "seed"}


@dataclass(frozen=True)
class Settings:
    """Sampler settings of one request; None takes the task's stored setting (`mtu.sampler`), else the Shapes
    sampler's (25 steps, guidance 1, image guidance 1.5).

    Args:
        steps: denoising steps.
        guidance: text guidance scale (off at <= 1).
        image_guidance: image guidance scale of edit/sr/remove (off below 1).
        seed: seed of the initial noise; negative (or None) draws a random one.
    """

    steps: int | None = None
    guidance: float | None = None
    image_guidance: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class Reply:
    """One answer: the image, what made it, and who it shared the denoising loop with."""

    image: PIL.Image.Image
    task: str
    guessed: bool
    seed: int
    steps: int
    batch_tasks: tuple[str, ...]
    seconds: float


class ChatService:
    """Checks chat requests, sizes them, and runs them through a shared `BatchWorker`.

    Args:
        pipe: the `MTUPipeline` to serve.
        limits: what the server accepts.
    """

    def __init__(self, pipe, limits: ServeLimits | None = None):
        self.pipe = pipe
        self.limits = limits or ServeLimits()
        self.worker = BatchWorker(pipe, self.limits.max_batch, self.limits.batch_wait_s, self.limits.max_queue)
        self.tasks: list[str] = list(pipe.unet.task_names)
        self.factor = pipe.vae_scale_factor
        self.native = pipe.unet.config.sample_size * self.factor  # the model's own output side
        # a request's steps: the server's limit, and no more than the model's scheduler can take
        self.max_steps = min(self.limits.max_steps, scheduler_max_steps(getattr(pipe, "scheduler", None))[0])

    def start(self) -> ChatService:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def choose_task(self, text: str, choice: str | None, image, mask) -> tuple[str, bool]:
        """The task to run: the user's choice, or a guess from the text; returns (task, guessed)."""
        if choice in (None, "", AUTO):
            specs = self.pipe.unet.mtu_config.tasks
            return guess_task(text, image is not None, mask is not None, specs), True
        if choice not in self.tasks:
            raise RequestError(f"unknown task {choice!r}; this model serves {self.tasks} (or {AUTO!r} to guess)")
        return choice, False

    def run(
        self,
        text: str,
        image: PIL.Image.Image | None = None,
        mask: PIL.Image.Image | None = None,
        task: str | None = AUTO,
        settings: Settings = Settings(),
    ) -> Reply:
        """Answer one request with one image.

        Args:
            text: the caption or instruction.
            image: the image to work on (RGB, already within the upload limits), if any.
            mask: "L" mask, white where inpainting fills, the size of `image`.
            task: a task name, or "auto" to guess it from the text.
            settings: sampler settings.

        Raises:
            RequestError: with a message for the user (bad settings, missing image or mask, busy, timeout).
        """
        text = text.strip()
        if not text and image is None:
            raise RequestError("type a request: a caption such as 'a red circle at the top left', or attach an image")
        name, guessed = self.choose_task(text, task, image, mask)
        settings = self.check_settings(self.settings_for(name, settings))
        seed = settings.seed  # a random one drawn by check_settings when asked for
        request = self.build_request(name, text, image, mask, settings, seed)
        future = self.worker.submit(request, int(settings.steps))
        try:
            result = future.result(timeout=self.limits.timeout_s)
        except FutureTimeout:
            future.cancel()  # dropped from the queue if it has not started; its images are discarded otherwise
            raise ServerBusy(
                f"no result within {self.limits.timeout_s:.0f} s (the server is busy): try again, or with fewer steps"
            ) from None
        return Reply(result.images[0], name, guessed, seed, int(settings.steps), result.batch_tasks, result.seconds)

    def settings_for(self, task: str, settings: Settings = Settings()) -> Settings:
        """`settings` with what it leaves out (None) taken from `task`'s stored sampler, else the Shapes one."""
        stored = self.pipe.sampler_for(task, SHAPES_SAMPLER)
        return Settings(
            stored.num_inference_steps if settings.steps is None else settings.steps,
            stored.guidance_scale if settings.guidance is None else settings.guidance,
            stored.image_guidance_scale if settings.image_guidance is None else settings.image_guidance,
            settings.seed,
        )

    def build_request(self, task: str, text: str, image, mask, settings: Settings, seed: int) -> MTURequest:
        """Check the inputs of `task`, resize them to the size it runs at, and make the request."""
        spec = self.spec(task)
        if self.pipe.sampler_for(task, SHAPES_SAMPLER).empty_prompt:
            text = ""  # trained without captions (sr): the chat's words asked for the task, they do not describe it
        common = dict(
            guidance_scale=float(settings.guidance),
            image_guidance_scale=float(settings.image_guidance),
            generator=torch.Generator().manual_seed(seed),
        )
        if spec.conditioning == "none":
            return MTURequest(task, text, height=self.native, width=self.native, **common)
        if image is None:
            raise RequestError(f"{task} works on an image: attach one, or first generate one from a caption")
        if spec.conditioning == "masked_image" and mask is None:
            raise RequestError(
                f"{task} fills a painted area: paint over the part of the current image to fill, then send"
            )
        height, width = self.output_size(task, image.size)
        if spec.upscale > 1:  # the pipeline resizes the low-resolution input to the output size itself
            return MTURequest(task, text, image=image, height=height, width=width, **common)
        image = image.resize((width, height), PIL.Image.BICUBIC)
        if spec.conditioning == "masked_image":
            mask = mask.convert("L").resize((width, height), PIL.Image.NEAREST)
            return MTURequest(task, text, image=image, mask_image=mask, **common)
        return MTURequest(task, text, image=image, **common)

    def spec(self, task: str):
        """The `TaskSpec` of one of the model's tasks."""
        return self.pipe.unet.mtu_config.tasks[self.tasks.index(task)]

    def output_size(self, task: str, image_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) a task runs at for an input of `image_size` (width, height).

        Inputs are scaled so their longer side is the model's own resolution (so most requests share a
        size and batch together); the outputs of a task that scales up (`TaskSpec.upscale`, sr: 4x) are
        the input scaled up that much, within that many times the resolution and `max_side`.
        """
        width, height = image_size
        upscale = self.spec(task).upscale
        if upscale > 1:
            box = min(upscale * self.native, self.limits.max_side)
            scale = min(upscale, box / max(width, height))
        else:
            scale = self.native / max(width, height)
        return self._round(height * scale), self._round(width * scale)

    def _round(self, side: float) -> int:
        return max(self.factor, int(round(side / self.factor)) * self.factor)

    def check_settings(self, settings: Settings) -> Settings:
        """`settings` checked and converted by the library's one validator (`mtu.utils.limits.check_settings`, as the
        command line and `MTUPipeline` check them), steps within `max_steps`; RequestError otherwise."""
        seed = settings.seed
        draw = seed is None or isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed < 0
        try:
            checked = check_settings(
                SERVER_NAMES,
                self.max_steps,
                steps=settings.steps,
                guidance=settings.guidance,
                image_guidance=settings.image_guidance,
                seed=None if draw else seed,
            )
        except ValueError as error:
            raise RequestError(str(error)) from None
        seed = random.randrange(2**31) if draw else checked["seed"]
        return Settings(checked["steps"], checked["guidance"], checked["image_guidance"], seed)
