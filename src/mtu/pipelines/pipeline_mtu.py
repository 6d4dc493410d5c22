"""`MTUPipeline`: text-to-image, editing, super-resolution, removal and inpainting from one MTU denoiser.

Each task follows the stock pipeline its export runs in, step for step (same noise draws, same
guidance arithmetic), so `mtu export` + the stock pipeline reproduces `MTUPipeline`'s images:
- t2i: `StableDiffusionPipeline` (text classifier-free guidance);
- edit, sr, remove: `StableDiffusionInstructPix2PixPipeline` (image latent concatenated, dual guidance);
- inpaint: `StableDiffusionInpaintPipeline` (mask + masked-image latent), plus pasting back the pixels
  outside the mask (`preserve_unmasked`).
Requests of different tasks can share one denoising loop (`run_batch`): the MTU model takes a task
per sample, which adapter switching (LoRA) cannot do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

import mtu
from mtu.assets import resolve_model_path
from mtu.conditioning import conditioning_channels, denoiser_input, latent_mask, mask_image
from mtu.config import MTUConfig, TaskSpec
from mtu.limits import check_steps
from mtu.model import MTUModel, concat_task_inputs
from mtu.pipelines.inputs import check_bounds, image_count, image_size, tokenize


@dataclass
class MTURequest:
    """One task call: what `MTUPipeline.__call__` takes, as data, so several can share a denoising loop.

    Args:
        task: a task of the model ("t2i", "edit", "sr", "remove", "inpaint", or your own).
        prompt: text (caption or instruction), one string or one per image.
        image: the input image(s) of image tasks (for "sr", the low-resolution image).
        mask_image: for "inpaint": white (1) where pixels are to be generated.
        negative_prompt: what the unconditional branch of guidance sees ("" when None).
        guidance_scale: text guidance; guidance is off at <= 1.
        image_guidance_scale: image guidance of edit/sr/remove (InstructPix2Pix); needs >= 1 to guide.
        num_images_per_prompt: images per prompt.
        generator: seeds the initial noise (and the inpaint VAE sample), as in diffusers.
        height, width: output size; by default the model's for t2i, the input image's for image tasks,
            and `upscale` x the input's for tasks that scale up (sr).
        upscale: tasks that scale up (`TaskSpec.upscale` > 1) only: the scale factor when height/width
            are not given; None takes the task's own.
        preserve_unmasked: "inpaint" only: paste back the input pixels outside the mask.
    """

    task: str
    prompt: str | list[str] = ""
    image: PipelineImageInput | None = None
    mask_image: PipelineImageInput | None = None
    negative_prompt: str | list[str] | None = None
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    num_images_per_prompt: int = 1
    generator: torch.Generator | None = None
    height: int | None = None
    width: int | None = None
    upscale: int | None = None
    preserve_unmasked: bool = True

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


@dataclass
class MTUPipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


@dataclass
class _Plan:
    """A request turned into tensors for the shared loop: its guidance copies and how to combine them."""

    request: MTURequest
    spec: TaskSpec
    latents: torch.Tensor  # (B, C, h, w) initial noise
    text: torch.Tensor  # (copies * B, L, D)
    combine: Callable[[torch.Tensor], torch.Tensor]  # (copies * B, ...) noise -> (B, ...) guided noise
    copies: int
    condition: torch.Tensor | None = None  # (copies * B, E, h, w): `conditioning_channels`
    added_cond: dict[str, torch.Tensor] = field(default_factory=dict)  # SDXL text_embeds / time_ids
    paste: tuple[torch.Tensor, torch.Tensor] | None = None  # (image, pixel mask) to restore outside the mask


class MTUPipeline(DiffusionPipeline):
    """Every task of an MTU model through one diffusers pipeline (SD 1.x/2.x and SDXL layouts).

    Example:
        >>> pipe = MTUPipeline.from_base("shapes-base", "my-mtu")  # base folder + MTU folder
        >>> pipe(task="t2i", prompt="a red circle at the top left, on a gray background").images[0]
        >>> pipe(task="edit", prompt="make the red circle blue", image=picture).images[0]
        >>> pipe.run_batch([MTURequest("t2i", "a ..."), MTURequest("sr", image=small)])  # one loop
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae"
    _optional_components = ["text_encoder_2", "tokenizer_2"]

    def __init__(self, vae, text_encoder, tokenizer, unet: MTUModel, scheduler, text_encoder_2=None, tokenizer_2=None):
        super().__init__()
        if not isinstance(unet, MTUModel):
            raise ValueError(f"unet must be an MTUModel (from mtu.upcycle or mtu.load), got {type(unet).__name__}")
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.mask_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )

    @classmethod
    def from_base(
        cls,
        base: str | Path,
        mtu_model: str | Path | None = None,
        config: MTUConfig | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> MTUPipeline:
        """Load a stock SD/SDXL pipeline folder (or a shipped name such as "shapes-base") and its MTU denoiser.

        Args:
            base: the base model's diffusers folder or shipped name.
            mtu_model: a folder written by `MTUModel.save_pretrained`; None upcycles afresh with `config`.
            config: the MTUConfig for a fresh upcycle (default: the five built-in tasks, N=4).
            kwargs: passed to `DiffusionPipeline.from_pretrained` (e.g. torch_dtype).
        """
        stock = DiffusionPipeline.from_pretrained(resolve_model_path(base), **kwargs)
        parts = stock.components
        if mtu_model is not None:
            unet = mtu.load(parts["unet"], mtu_model, allow_pickle=allow_pickle)
        else:
            config = config or MTUConfig()
            config.base_model_name_or_path = config.base_model_name_or_path or str(base)
            unet = mtu.upcycle(parts["unet"], config)
        return cls.from_stock(parts, unet)

    @classmethod
    def from_stock(cls, components: dict[str, Any], unet: torch.nn.Module) -> MTUPipeline:
        """An MTUPipeline of a stock pipeline's `components` around the MTU denoiser `unet`."""
        names = ("vae", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2")
        return cls(unet=unet, **{name: components.get(name) for name in names})

    @classmethod
    def from_mtu(cls, mtu_model: str | Path, base: str | Path | None = None, **kwargs: Any) -> MTUPipeline:
        """Load an MTU folder (or the shipped name "shapes-mtu") onto the base model its config names (or
        `base`, when given)."""
        mtu_model = resolve_model_path(mtu_model)
        base = base or MTUConfig.load(mtu_model).base_model_name_or_path
        if base is None:
            raise ValueError(f"{mtu_model} does not name its base model: pass base=<base model folder>")
        return cls.from_base(base, mtu_model, **kwargs)

    @property
    def is_sdxl(self) -> bool:
        return self.text_encoder_2 is not None

    def __call__(
        self,
        task: str,
        prompt: str | list[str] = "",
        *,
        num_inference_steps: int = 50,
        output_type: str = "pil",
        return_dict: bool = True,
        eta: float = 0.0,
        **request: Any,
    ):
        """Run one task. Arguments are those of `MTURequest` plus the loop settings.

        Returns:
            `MTUPipelineOutput` with `images` (PIL list, numpy array, torch tensor or latents per `output_type`).
        """
        images = self.run_batch([MTURequest(task, prompt, **request)], num_inference_steps, output_type, eta)[0]
        return MTUPipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def run_batch(
        self, requests: list[MTURequest], num_inference_steps: int = 50, output_type: str = "pil", eta: float = 0.0
    ) -> list[Any]:
        """Run requests of any tasks through one denoising loop; returns each request's images, in order.

        With a deterministic scheduler (DDIM with eta=0, the default of the shipped model), each request's
        images equal those of a separate call with the same generator.
        """
        check_steps(num_inference_steps)
        requests = [self.check_inputs(request) for request in requests]
        sizes = {(r.height, r.width) for r in requests}
        if len(sizes) > 1:
            raise ValueError(
                f"requests in one batch must share an output size; got {sorted(sizes)}: batch them separately"
            )
        device = self._execution_device
        plans = [self.prepare_request(request, device) for request in requests]
        latents = self.denoise(plans, num_inference_steps, eta, device)
        return self.decode(plans, latents, output_type)

    # Input checks run before any compute, so a bad request costs nothing.
    def check_inputs(self, request: MTURequest) -> MTURequest:
        """Validate a request and fill in its output size; ValueError naming the fix otherwise."""
        names = self.unet.task_names
        if request.task not in names:
            raise ValueError(f"unknown task {request.task!r}; this model serves {names}")
        spec = self.unet.mtu_config.tasks[names.index(request.task)]
        if spec.conditioning == "custom":
            raise ValueError(
                f"task {request.task!r} has custom conditioning: build its input and call pipe.unet directly"
            )
        if spec.conditioning == "none" and request.image is not None:
            raise ValueError(
                f"task {request.task!r} takes no image; for image input use one of the image tasks of {names}"
            )
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
        prompts = request.prompts
        if request.image is not None and image_count(request.image) not in (1, len(prompts)):
            raise ValueError(
                f"got {len(prompts)} prompts for {image_count(request.image)} images: pass one prompt per image"
            )
        if isinstance(request.negative_prompt, list) and len(request.negative_prompt) != len(prompts):
            raise ValueError(f"got {len(request.negative_prompt)} negative prompts for {len(prompts)} prompts")
        if request.num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {request.num_images_per_prompt}")
        upscale = self._upscale(request, spec)
        height, width = self._output_size(request, upscale)
        factor = self.vae_scale_factor
        if height % factor or width % factor:
            raise ValueError(
                f"height and width must be multiples of {factor} (the VAE's downsampling), got {height}x{width}: "
                f"resize the image or pass height={height // factor * factor}, width={width // factor * factor}"
            )
        check_bounds(request, height, width, upscale)
        return replace(request, height=height, width=width)

    @staticmethod
    def _upscale(request: MTURequest, spec: TaskSpec) -> int:
        """How many times the input image a side the output is, when height / width are not given."""
        if spec.upscale == 1:
            return 1
        if request.upscale is not None and (
            isinstance(request.upscale, bool) or not isinstance(request.upscale, int) or request.upscale < 1
        ):
            raise ValueError(f"upscale must be an int >= 1, got {request.upscale!r}")
        return request.upscale or spec.upscale

    def _output_size(self, request: MTURequest, upscale: int) -> tuple[int, int]:
        if request.height is not None and request.width is not None:
            return request.height, request.width
        if request.image is None:
            size = self.unet.config.sample_size * self.vae_scale_factor
            return request.height or size, request.width or size
        height, width = image_size(request.image)
        return request.height or height * upscale, request.width or width * upscale

    def encode_prompt(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text states (B, L, D) and, for SDXL, pooled embeddings (B, D2), as the stock pipelines compute them."""
        if not self.is_sdxl:
            ids = self._tokenize(self.tokenizer, prompts).to(device)
            return self.text_encoder(ids)[0], None
        states, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            output = encoder(self._tokenize(tokenizer, prompts).to(device), output_hidden_states=True)
            pooled = output[0]  # the last encoder's projected embedding is SDXL's pooled text
            states.append(output.hidden_states[-2])
        return torch.cat(states, dim=-1), pooled

    @staticmethod
    def _tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
        return tokenize(tokenizer, prompts)  # warns when a prompt is cut to the encoder's length

    def _negative_text(self, request: MTURequest, count: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if request.negative_prompt is None and self.is_sdxl and self.config.get("force_zeros_for_empty_prompt", True):
            text, pooled = self.encode_prompt([""] * count, device)
            return torch.zeros_like(text), torch.zeros_like(pooled)
        negative = request.negative_prompt if request.negative_prompt is not None else ""
        return self.encode_prompt([negative] * count if isinstance(negative, str) else negative, device)

    def prepare_request(self, request: MTURequest, device: torch.device) -> _Plan:
        """Encode text, draw the noise, encode the conditioning, and decide the guidance copies."""
        spec = self.unet.mtu_config.tasks[self.unet.task_names.index(request.task)]
        per_prompt = request.num_images_per_prompt
        prompts = request.prompts
        text, pooled = self.encode_prompt(prompts, device)
        negative, negative_pooled = self._negative_text(request, len(prompts), device)
        text, negative = text.repeat_interleave(per_prompt, 0), negative.repeat_interleave(per_prompt, 0)
        batch = len(prompts) * per_prompt
        dtype = self.unet.dtype
        shape = (
            batch,
            self.vae.config.latent_channels,
            request.height // self.vae_scale_factor,
            request.width // self.vae_scale_factor,
        )
        latents = (
            randn_tensor(shape, generator=request.generator, device=device, dtype=dtype)
            * self.scheduler.init_noise_sigma
        )

        condition = mask = paste = None
        if spec.conditioning != "none":
            image = self._preprocess_images(request, len(prompts)).to(device=device, dtype=dtype)
        if spec.conditioning == "image":
            condition = retrieve_latents(self.vae.encode(image), sample_mode="argmax")
        elif spec.conditioning == "masked_image":
            pixel_mask = self.mask_processor.preprocess(request.mask_image, height=request.height, width=request.width)
            pixel_mask = self._broadcast(pixel_mask, len(prompts)).to(device=device, dtype=dtype)
            # Sampled with the generator after the noise, in the stock inpainting pipeline's order.
            condition = retrieve_latents(self.vae.encode(mask_image(image, pixel_mask)), generator=request.generator)
            condition = condition * self.vae.config.scaling_factor
            mask = latent_mask(pixel_mask, shape[-2:])
            paste = (image, (pixel_mask >= 0.5).to(dtype)) if request.preserve_unmasked else None
        condition = conditioning_channels(spec, condition, mask)
        if condition is not None:
            condition = condition.repeat_interleave(per_prompt, 0)
        if paste is not None:
            paste = tuple(t.repeat_interleave(per_prompt, 0) for t in paste)

        plan = self._guidance(request, spec, text, negative, condition)
        plan.latents, plan.paste = latents, paste
        if self.is_sdxl:
            pooled = pooled.repeat_interleave(per_prompt, 0)
            negative_pooled = negative_pooled.repeat_interleave(per_prompt, 0)
            plan.added_cond = self._sdxl_conditioning(plan, pooled, negative_pooled, request, dtype, device)
        return plan

    def _preprocess_images(self, request: MTURequest, count: int) -> torch.Tensor:
        image = self.image_processor.preprocess(request.image, height=request.height, width=request.width)
        return self._broadcast(image, count)

    @staticmethod
    def _broadcast(tensor: torch.Tensor, count: int) -> torch.Tensor:
        return tensor.expand(count, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor

    @staticmethod
    def _guidance(request, spec, text, negative, condition) -> _Plan:
        """Guidance copies in the stock pipelines' batch order, and the arithmetic that combines them."""
        g, ig = request.guidance_scale, request.image_guidance_scale
        if spec.conditioning == "image" and g > 1.0 and ig >= 1.0:
            # InstructPix2Pix: [text + image, image only, neither].
            def combine(noise):
                with_text, image_only, neither = noise.chunk(3)
                return neither + g * (with_text - image_only) + ig * (image_only - neither)

            condition = torch.cat([condition, condition, torch.zeros_like(condition)])
            return _Plan(request, spec, None, torch.cat([text, negative, negative]), combine, 3, condition)
        if spec.conditioning != "image" and g > 1.0:

            def combine(noise):
                unconditional, conditional = noise.chunk(2)
                return unconditional + g * (conditional - unconditional)

            twice = None if condition is None else torch.cat([condition, condition])
            return _Plan(request, spec, None, torch.cat([negative, text]), combine, 2, twice)
        return _Plan(request, spec, None, text, lambda noise: noise, 1, condition)

    def _sdxl_conditioning(self, plan, pooled, negative_pooled, request, dtype, device) -> dict[str, torch.Tensor]:
        batch = plan.latents.shape[0]
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

    def denoise(self, plans: list[_Plan], num_inference_steps: int, eta: float, device: torch.device) -> torch.Tensor:
        """One loop for all requests: each step runs every request's guidance copies in one denoiser call."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = torch.cat([plan.latents for plan in plans])
        sizes = [plan.latents.shape[0] for plan in plans]
        text = torch.cat([plan.text for plan in plans]).to(self.unet.dtype)
        tasks = [plan.request.task for plan in plans for _ in range(plan.copies * plan.latents.shape[0])]
        added = {key: torch.cat([plan.added_cond[key] for plan in plans]) for key in plans[0].added_cond}
        step_kwargs = self._step_kwargs(plans, eta)
        for t in self.progress_bar(self.scheduler.timesteps):
            inputs = []
            for plan, plan_latents in zip(plans, latents.split(sizes)):
                scaled = self.scheduler.scale_model_input(torch.cat([plan_latents] * plan.copies), t)
                inputs.append(denoiser_input(plan.spec, scaled, plan.condition))
            noise = self.unet(
                concat_task_inputs(inputs),
                t,
                encoder_hidden_states=text,
                added_cond_kwargs=added or None,
                task=tasks,
                return_dict=False,
            )[0]
            chunks = noise.split([plan.copies * size for plan, size in zip(plans, sizes)])
            guided = torch.cat([plan.combine(chunk) for plan, chunk in zip(plans, chunks)])
            latents = self.scheduler.step(guided, t, latents, **step_kwargs, return_dict=False)[0]
        return latents

    def _step_kwargs(self, plans: list[_Plan], eta: float) -> dict[str, Any]:
        import inspect

        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            if len(plans) == 1:
                kwargs["generator"] = plans[0].request.generator
            elif all(plan.request.generator is not None for plan in plans):
                kwargs["generator"] = [plan.request.generator for plan in plans for _ in range(plan.latents.shape[0])]
        return kwargs

    def decode(self, plans: list[_Plan], latents: torch.Tensor, output_type: str) -> list[Any]:
        """Decode each request's latents (restoring unmasked pixels for inpainting) and post-process."""
        results = []
        for plan, plan_latents in zip(plans, latents.split([p.latents.shape[0] for p in plans])):
            if output_type == "latent":
                results.append(plan_latents)
                continue
            images = self.vae.decode(plan_latents / self.vae.config.scaling_factor, return_dict=False)[0]
            if plan.paste is not None:
                source, pixel_mask = plan.paste
                images = source * (1 - pixel_mask) + images * pixel_mask
            results.append(self.image_processor.postprocess(images, output_type=output_type))
        return results
