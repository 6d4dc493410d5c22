"""A task call as data (`MTURequest`), its checks, and the plan `MTUPipeline`'s shared denoising loop runs.

A request is checked before any compute (`check_request`: ValueErrors naming the fix) and then turned
into a `Plan`: its initial noise, text states and conditioning, in the batch order of the stock pipeline
its export runs in, with the guidance arithmetic that combines the copies (`guidance_plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import PipelineImageInput
from diffusers.utils import BaseOutput

from mtu.config import TaskSpec
from mtu.pipelines.inputs import check_bounds, image_count, image_size
from mtu.utils.limits import PIPELINE_NAMES, check_settings


@dataclass
class MTURequest:
    """One task call: what `MTUPipeline.__call__` takes, as data, so several can share a denoising loop.

    Args:
        task: a task of the model ("t2i", "edit", "sr", "remove", "inpaint", or your own).
        prompt: text (caption or instruction), one string or one per image; None: "" (or `prompt_embeds`).
        image: the input image(s) of image tasks (for "sr", the low-resolution image).
        mask_image: for "inpaint": white (1) where pixels are to be generated.
        negative_prompt: what the unconditional branch of guidance sees ("" when None).
        guidance_scale: text guidance; guidance is off at <= 1. None: the task's stored setting
            (`mtu.sampler`), else 7.5.
        image_guidance_scale: image guidance of edit/sr/remove (InstructPix2Pix); needs >= 1 to guide. None: the
            task's stored setting, else 1.5.
        num_images_per_prompt: images per prompt.
        generator: seeds the initial noise (and the inpaint VAE sample), as in diffusers; a list: one per image.
        height, width: output size; by default the model's for t2i, the input image's for image tasks,
            and `upscale` x the input's for tasks that scale up (sr).
        upscale: tasks that scale up (`TaskSpec.upscale` > 1) only: the scale factor when height/width
            are not given; None takes the task's own.
        preserve_unmasked: "inpaint" only: paste back the input pixels outside the mask.
        latents: initial noise (images, latent channels, height / f, width / f) instead of drawing it.
        prompt_embeds, negative_prompt_embeds: text encoder states (prompts, tokens, width) instead of the
            prompts (SD 1.x / 2.x layout).
    """

    task: str
    prompt: str | list[str] | None = ""
    image: PipelineImageInput | None = None
    mask_image: PipelineImageInput | None = None
    negative_prompt: str | list[str] | None = None
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    num_images_per_prompt: int = 1
    generator: torch.Generator | list[torch.Generator] | None = None
    height: int | None = None
    width: int | None = None
    upscale: int | None = None
    preserve_unmasked: bool = True
    latents: torch.Tensor | None = None
    prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds: torch.Tensor | None = None

    @property
    def prompts(self) -> list[str]:
        if self.prompt is None:
            return [""] * (1 if self.prompt_embeds is None else len(self.prompt_embeds))
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def batch_size(self) -> int:
        """Prompts (or prompt embeddings) in the request; each makes `num_images_per_prompt` images."""
        return len(self.prompts)


@dataclass
class MTUPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


@dataclass
class Plan:
    """A request turned into tensors for the shared loop: its guidance copies and how to combine them."""

    request: MTURequest
    spec: TaskSpec
    latents: torch.Tensor | None  # (B, C, h, w) initial noise
    text: torch.Tensor  # (copies * B, L, D)
    combine: Callable[[torch.Tensor], torch.Tensor]  # (copies * B, ...) noise -> (B, ...) guided noise
    copies: int
    condition: torch.Tensor | None = None  # (copies * B, E, h, w): `conditioning_channels`
    added_cond: dict[str, torch.Tensor] = field(default_factory=dict)  # SDXL text_embeds / time_ids
    paste: tuple[torch.Tensor, torch.Tensor] | None = None  # (image, pixel mask) to restore outside the mask


def check_request(request: MTURequest, tasks: list[TaskSpec], default_size: int, vae_factor: int) -> MTURequest:
    """Validate a request against the model's `tasks` and fill in its output size; ValueError naming the fix.

    Args:
        default_size: the output side of a task without an input image (the model's native size).
        vae_factor: the VAE's downsampling, which output sides must be multiples of.
    """
    names = [spec.name for spec in tasks]
    if request.task not in names:
        raise ValueError(f"unknown task {request.task!r}; this model serves {names}")
    spec = tasks[names.index(request.task)]
    _check_images(request, spec, names)
    _check_embeddings(request)
    prompts = request.prompts
    if request.image is not None and image_count(request.image) not in (1, len(prompts)):
        raise ValueError(
            f"got {len(prompts)} prompts for {image_count(request.image)} images: pass one prompt per image"
        )
    if isinstance(request.negative_prompt, list) and len(request.negative_prompt) != len(prompts):
        raise ValueError(f"got {len(request.negative_prompt)} negative prompts for {len(prompts)} prompts")
    settings = check_settings(  # the one validator of the command line, this pipeline and the server
        PIPELINE_NAMES,
        guidance=request.guidance_scale,
        image_guidance=request.image_guidance_scale,
        num_images=request.num_images_per_prompt,
    )
    request = replace(
        request,
        guidance_scale=settings["guidance"],
        image_guidance_scale=settings["image_guidance"],
        num_images_per_prompt=settings["num_images"],
    )
    images = len(prompts) * request.num_images_per_prompt
    if isinstance(request.generator, list) and len(request.generator) != images:
        raise ValueError(f"got {len(request.generator)} generators for {images} images: pass one per image, or one")
    upscale = upscale_of(request, spec)
    height, width = output_size(request, upscale, default_size)
    if height % vae_factor or width % vae_factor:
        raise ValueError(
            f"height and width must be multiples of {vae_factor} (the VAE's downsampling), got {height}x{width}: "
            f"resize the image or pass height={height // vae_factor * vae_factor}, "
            f"width={width // vae_factor * vae_factor}"
        )
    check_bounds(request, height, width, upscale)
    return replace(request, height=height, width=width)


def _check_embeddings(request: MTURequest) -> None:
    """Text given once, as text or as embeddings; embeddings (prompts, tokens, width), the negative's alike."""
    for text, embeds in (("prompt", "prompt_embeds"), ("negative_prompt", "negative_prompt_embeds")):
        if getattr(request, embeds) is not None and getattr(request, text) not in (None, ""):
            raise ValueError(f"pass {text} or {embeds}, not both")
    given = request.prompt_embeds
    if given is not None and (not isinstance(given, torch.Tensor) or given.ndim != 3):
        raise ValueError(f"prompt_embeds must be a (prompts, tokens, width) tensor, got {_shape(given)}")
    negative = request.negative_prompt_embeds
    if negative is not None and (given is None or negative.shape != given.shape):
        raise ValueError(
            f"negative_prompt_embeds {_shape(negative)} needs prompt_embeds of its shape, got {_shape(given)}"
        )


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_latents(request: MTURequest, shape: tuple[int, int, int]) -> None:
    """Given initial noise must be (images, *shape): the latent channels and size of the request's output."""
    if request.latents is None:
        return
    expected = (request.batch_size * request.num_images_per_prompt, *shape)
    if not isinstance(request.latents, torch.Tensor) or tuple(request.latents.shape) != expected:
        raise ValueError(f"latents must be a tensor of shape {expected}, got {_shape(request.latents)}")


def per_image_generators(plan: Plan) -> list:
    """A request's generator for each of its images (a list already is one)."""
    generator = plan.request.generator
    return list(generator) if isinstance(generator, list) else [generator] * plan.latents.shape[0]


def step_end_callback(callback, tensor_inputs: list[str] | None):
    """`callback_on_step_end` as `(pipe, step, timestep, latents) -> latents`; None without one.

    Only "latents" can be handed over: the loop's text states are per guidance copy and per request, not
    diffusers' `prompt_embeds`.
    """
    if callback is None:
        return None
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        tensor_inputs = callback.tensor_inputs
    names = list(tensor_inputs or ["latents"])
    if names != ["latents"]:
        raise ValueError(f"callback_on_step_end_tensor_inputs can only be ['latents'] in MTUPipeline, got {names}")
    if not callable(callback):
        raise ValueError(f"callback_on_step_end must be callable, got {type(callback).__name__}")

    def call(pipe, step: int, timestep, latents: torch.Tensor) -> torch.Tensor:
        outputs = callback(pipe, step, timestep, {"latents": latents})
        return (outputs or {}).get("latents", latents)

    return call


def _check_images(request: MTURequest, spec: TaskSpec, names: list[str]) -> None:
    """The images a task's conditioning needs, and only those."""
    if spec.conditioning == "custom":
        raise ValueError(f"task {request.task!r} has custom conditioning: build its input and call pipe.unet directly")
    if spec.conditioning == "none" and request.image is not None:
        raise ValueError(f"task {request.task!r} takes no image; for image input use one of the image tasks of {names}")
    if spec.conditioning != "none" and request.image is None:
        raise ValueError(f"task {request.task!r} needs image=... (the input image to work on)")
    if spec.conditioning == "masked_image":
        if request.mask_image is None:
            raise ValueError(f"task {request.task!r} needs mask_image=... (white where pixels are to be generated)")
        if image_size(request.mask_image) != image_size(request.image):
            raise ValueError(
                f"mask_image is {image_size(request.mask_image)} (height, width) but image is "
                f"{image_size(request.image)}: resize the mask to the image"
            )


def upscale_of(request: MTURequest, spec: TaskSpec) -> int:
    """How many times the input image a side the output is, when height / width are not given."""
    if spec.upscale == 1:
        return 1
    if request.upscale is not None and (
        isinstance(request.upscale, bool) or not isinstance(request.upscale, int) or request.upscale < 1
    ):
        raise ValueError(f"upscale must be an int >= 1, got {request.upscale!r}")
    return request.upscale or spec.upscale


def output_size(request: MTURequest, upscale: int, default_size: int) -> tuple[int, int]:
    if request.height is not None and request.width is not None:
        return request.height, request.width
    if request.image is None:
        return request.height or default_size, request.width or default_size
    height, width = image_size(request.image)
    return request.height or height * upscale, request.width or width * upscale


def guidance_plan(request: MTURequest, spec: TaskSpec, text, negative, condition) -> Plan:
    """Guidance copies in the stock pipelines' batch order, and the arithmetic that combines them."""
    g, ig = request.guidance_scale, request.image_guidance_scale
    if spec.conditioning == "image" and g > 1.0 and ig >= 1.0:
        # InstructPix2Pix: [text + image, image only, neither].
        def combine(noise):
            with_text, image_only, neither = noise.chunk(3)
            return neither + g * (with_text - image_only) + ig * (image_only - neither)

        condition = torch.cat([condition, condition, torch.zeros_like(condition)])
        return Plan(request, spec, None, torch.cat([text, negative, negative]), combine, 3, condition)
    if spec.conditioning != "image" and g > 1.0:

        def combine(noise):
            unconditional, conditional = noise.chunk(2)
            return unconditional + g * (conditional - unconditional)

        twice = None if condition is None else torch.cat([condition, condition])
        return Plan(request, spec, None, torch.cat([negative, text]), combine, 2, twice)
    return Plan(request, spec, None, text, lambda noise: noise, 1, condition)


def sdxl_conditioning(plan: Plan, pooled, negative_pooled, dtype, device) -> dict[str, torch.Tensor]:
    """SDXL's `added_cond_kwargs` for a plan's guidance copies: pooled text and (size, crop, size) time ids."""
    request, batch = plan.request, plan.latents.shape[0]
    time_ids = torch.tensor(
        [[request.height, request.width, 0, 0, request.height, request.width]], dtype=dtype, device=device
    )
    if plan.copies == 3:
        text_embeds = torch.cat([pooled, negative_pooled, negative_pooled])
    elif plan.copies == 2:
        text_embeds = torch.cat([negative_pooled, pooled])
    else:
        text_embeds = pooled
    return {"text_embeds": text_embeds.to(dtype), "time_ids": time_ids.repeat(batch * plan.copies, 1)}
