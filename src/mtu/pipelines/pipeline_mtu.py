"""`MTUPipeline`: text-to-image, editing, super-resolution, removal and inpainting from one MTU denoiser.

Each task follows the stock pipeline its export runs in, step for step (same noise draws, same
guidance arithmetic), so `mtu export` + the stock pipeline reproduces `MTUPipeline`'s images:
- t2i: `StableDiffusionPipeline` (text classifier-free guidance);
- edit, sr, remove: `StableDiffusionInstructPix2PixPipeline` (image latent concatenated, dual guidance);
- inpaint: `StableDiffusionInpaintPipeline` (mask + masked-image latent), plus pasting back the pixels
  outside the mask (`preserve_unmasked`).
Requests of different tasks can share one denoising loop (`run_batch`): the MTU model takes a task
per sample, which adapter switching (LoRA) cannot do. Requests are checked and planned in
`mtu.pipelines.requests`, prompts encoded in `mtu.pipelines.text`; this module prepares the latents and
conditioning, runs the loop and decodes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils.torch_utils import randn_tensor

from mtu.conditioning import conditioning_channels, denoiser_input, latent_mask, mask_image
from mtu.model import MTUModel, concat_task_inputs
from mtu.pipelines.loaders import MTULoaderMixin
from mtu.pipelines.requests import (
    MTUPipelineOutput,
    MTURequest,
    Plan,
    check_latents,
    check_request,
    guidance_plan,
    per_image_generators,
    sdxl_conditioning,
    step_end_callback,
)
from mtu.pipelines.sampling import StoredSamplers
from mtu.pipelines.text import TextEncoding
from mtu.utils.limits import check_steps

__all__ = ["MTUPipeline", "MTUPipelineOutput", "MTURequest"]


class MTUPipeline(MTULoaderMixin, DiffusionPipeline, StoredSamplers, TextEncoding):
    """Every task of an MTU model through one diffusers pipeline (SD 1.x/2.x and SDXL layouts).

    Example:
        >>> pipe = MTUPipeline.from_pretrained("runs/shapes-mtu/model")  # any model mtu knows (see from_pretrained)
        >>> pipe(task="t2i", prompt="a red circle at the top left, on a gray background").images[0]
        >>> pipe(task="edit", prompt="make the red circle blue", image=picture).images[0]
        >>> pipe.run_batch([MTURequest("t2i", "a ..."), MTURequest("sr", image=small)])  # one loop
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae"
    _optional_components = ["text_encoder_2", "tokenizer_2"]

    def __init__(self, vae, text_encoder, tokenizer, unet: MTUModel, scheduler, text_encoder_2=None, tokenizer_2=None):
        super().__init__()
        self._check_denoiser(unet)
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
        )
        self.samplers = {}  # per-task stored sampler settings (`mtu.sampler`); from_pretrained reads the model's
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.mask_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )

    @staticmethod
    def _check_denoiser(unet: Any) -> None:
        """A PyTorch `MTUModel` only; `OnnxPipeline` overrides this to share the set-up with onnxruntime sessions."""
        if not isinstance(unet, MTUModel):
            raise ValueError(f"unet must be an MTUModel (from mtu.upcycle or mtu.load), got {type(unet).__name__}")

    def __call__(
        self,
        task: str,
        prompt: str | list[str] | None = None,
        image: PipelineImageInput | None = None,
        mask_image: PipelineImageInput | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        upscale: int | None = None,
        preserve_unmasked: bool = True,
    ) -> MTUPipelineOutput | tuple:
        """Run one task; the arguments mean what they mean in diffusers' Stable Diffusion pipelines.

        Sampler settings left as None take the task's stored ones (`pipe.samplers`, from the model's
        `sampler.json`), else diffusers' defaults (50 steps, guidance 7.5, image guidance 1.5).

        Args:
            task: a task of the model (`pipe.unet.task_names`): "t2i", "edit", "sr", "remove", "inpaint", ...
            prompt: the caption or instruction, one or one per image; None: `prompt_embeds`, else "" (sr and
                inpaint work from the image; their prompt is optional).
            image: the input image(s) of image tasks (for sr, the low-resolution image): PIL, numpy or torch.
            mask_image: inpaint: white (1) where pixels are to be generated, the size of `image`.
            height, width: output size; default: the model's for t2i, the input's (times `upscale` for sr).
            num_inference_steps: denoising steps.
            guidance_scale: text classifier-free guidance; on when > 1.
            image_guidance_scale: image guidance of edit / sr / remove (InstructPix2Pix); on when >= 1 and
                `guidance_scale` > 1.
            negative_prompt: what guidance steers away from ("" when None); ignored without guidance.
            num_images_per_prompt: images per prompt.
            eta: DDIM's eta (only DDIM uses it).
            generator: a `torch.Generator`, or one per image, making the noise (and inpaint's VAE sample)
                deterministic.
            latents: initial noise, (batch x images per prompt, latent channels, height / f, width / f) for the
                VAE's factor f; scaled by the scheduler's `init_noise_sigma` like diffusers does; default: drawn
                with `generator`.
            prompt_embeds: text encoder states (batch, tokens, width) instead of `prompt` (SD 1.x / 2.x layout).
            negative_prompt_embeds: states instead of `negative_prompt`, the shape of `prompt_embeds`.
            output_type: "pil", "np", "pt" or "latent".
            return_dict: return an `MTUPipelineOutput` rather than a tuple `(images,)`.
            callback_on_step_end: called after each step as `callback_on_step_end(pipe, step, timestep,
                callback_kwargs)`; it returns a dict, whose "latents" (if any) replace the loop's. A diffusers
                `PipelineCallback` works too; set `pipe._interrupt = True` in it to stop early.
            callback_on_step_end_tensor_inputs: the tensors `callback_kwargs` holds; only ["latents"] (default).
            upscale: sr (tasks whose `TaskSpec.upscale` > 1): the scale when height / width are not given.
            preserve_unmasked: inpaint: paste the input pixels outside the mask back.

        Returns:
            `MTUPipelineOutput` with `images` (PIL list, numpy array, torch tensor or latents per `output_type`),
            or `(images,)` when `return_dict` is False.

        Example:
            >>> pipe("edit", "make the red circle blue", image=picture).images[0]  # the task's stored sampler
            >>> pipe("t2i", "a red circle", num_inference_steps=10, generator=torch.Generator().manual_seed(0))
        """
        request = MTURequest(
            task,
            prompt,
            image=image,
            mask_image=mask_image,
            negative_prompt=negative_prompt,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            num_images_per_prompt=num_images_per_prompt,
            generator=generator,
            height=height,
            width=width,
            upscale=upscale,
            preserve_unmasked=preserve_unmasked,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        step_end = (callback_on_step_end, callback_on_step_end_tensor_inputs)
        images = self.run_batch([request], num_inference_steps, output_type, eta, *step_end)[0]
        return MTUPipelineOutput(images=images) if return_dict else (images,)

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. in `callback_on_step_end`) to skip the remaining steps."""
        return getattr(self, "_interrupt", False)

    @property
    def num_timesteps(self) -> int:
        """Steps of the running (or last) loop, as diffusers' callbacks read it."""
        return getattr(self, "_num_timesteps", 0)

    @property
    def mixes_tasks(self) -> bool:
        """Whether one denoising loop serves several tasks; a lora / ia3 model switches adapters per task."""
        from mtu.baseline_models import has_adapters

        return not has_adapters(self.unet)

    @torch.no_grad()
    def run_batch(
        self,
        requests: list[MTURequest],
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        eta: float = 0.0,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> list[Any]:
        """Run requests of any tasks through one denoising loop; returns each request's images, in order.

        With a deterministic scheduler (DDIM with eta=0, the default of the shipped model), each request's
        images equal those of a separate call with the same generator. A lora / ia3 model (`mixes_tasks`
        False) runs requests of one task per call, through that task's adapter. `num_inference_steps` None
        takes the tasks' stored steps (`pipe.samplers`), else 50; the loop runs with the tasks' stored scheduler.
        `callback_on_step_end` is `__call__`'s, called with the latents of the whole batch.
        """
        callback = step_end_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        requests = [self.check_inputs(request) for request in requests]
        tasks = [request.task for request in requests]
        sizes = {(r.height, r.width) for r in requests}
        if len(sizes) > 1:
            raise ValueError(
                f"requests in one batch must share an output size; got {sorted(sizes)}: batch them separately"
            )
        self._switch_adapters(requests)
        device = self._execution_device
        with self.task_scheduler(tasks):
            num_inference_steps = check_steps(self.loop_steps(tasks, num_inference_steps), scheduler=self.scheduler)
            plans = [self.prepare_request(request, device) for request in requests]
            latents = self.denoise(plans, num_inference_steps, eta, device, callback)
        return self.decode(plans, latents, output_type)

    def _switch_adapters(self, requests: list[MTURequest]) -> None:
        """Per-task adapters (lora / ia3) switch the whole model: one task per loop, its adapter active."""
        from mtu.baseline_models import activate, has_adapters

        if not requests or not has_adapters(self.unet):
            return
        tasks = sorted({request.task for request in requests})
        if len(tasks) > 1:
            raise ValueError(
                f"this model's per-task adapters (lora / ia3) serve one task per denoising loop, got {tasks}: "
                "run each task's requests separately"
            )
        activate(self.unet, tasks[0])

    def check_inputs(self, request: MTURequest) -> MTURequest:
        """Validate a request and fill in its output size and left-out guidance before any compute; ValueError
        naming the fix."""
        default_size = self.unet.config.sample_size * self.vae_scale_factor
        request = check_request(request, self.unet.mtu_config.tasks, default_size, self.vae_scale_factor)
        if request.prompt_embeds is not None and self.is_sdxl:
            raise ValueError("prompt_embeds: an SDXL-layout model also needs pooled text embeddings; pass prompt")
        latent_shape = (self.vae.config.latent_channels, request.height // self.vae_scale_factor)
        check_latents(request, (*latent_shape, request.width // self.vae_scale_factor))
        return self.fill_guidance(request)

    def prepare_request(self, request: MTURequest, device: torch.device) -> Plan:
        """Encode text, draw the noise, encode the conditioning, and decide the guidance copies."""
        spec = self.unet.mtu_config.tasks[self.unet.task_names.index(request.task)]
        per_prompt, count = request.num_images_per_prompt, request.batch_size
        text, pooled, negative, negative_pooled = self._text_states(request, device)
        text, negative = text.repeat_interleave(per_prompt, 0), negative.repeat_interleave(per_prompt, 0)
        dtype = self.unet.dtype
        shape = (
            count * per_prompt,
            self.vae.config.latent_channels,
            request.height // self.vae_scale_factor,
            request.width // self.vae_scale_factor,
        )
        if request.latents is None:
            latents = randn_tensor(shape, generator=request.generator, device=device, dtype=dtype)
        else:
            latents = request.latents.to(device=device, dtype=dtype)
        latents = latents * self.scheduler.init_noise_sigma  # as diffusers' prepare_latents, given or drawn

        condition = mask = paste = None
        if spec.conditioning != "none":
            image = self._preprocess_images(request, count).to(device=device, dtype=dtype)
        if spec.conditioning == "image":
            condition = retrieve_latents(self.vae.encode(image), sample_mode="argmax")
        elif spec.conditioning == "masked_image":
            pixel_mask = self.mask_processor.preprocess(request.mask_image, height=request.height, width=request.width)
            pixel_mask = self._broadcast(pixel_mask, count).to(device=device, dtype=dtype)
            # Sampled with the generator after the noise, in the stock inpainting pipeline's order.
            condition = self._sample_latents(mask_image(image, pixel_mask), request.generator)
            condition = condition * self.vae.config.scaling_factor
            mask = latent_mask(pixel_mask, shape[-2:])
            paste = (image, (pixel_mask >= 0.5).to(dtype)) if request.preserve_unmasked else None
        condition = conditioning_channels(spec, condition, mask)
        if condition is not None:
            condition = condition.repeat_interleave(per_prompt, 0)
        if paste is not None:
            paste = tuple(t.repeat_interleave(per_prompt, 0) for t in paste)

        plan = guidance_plan(request, spec, text, negative, condition)
        plan.latents, plan.paste = latents, paste
        if self.is_sdxl:
            pooled = pooled.repeat_interleave(per_prompt, 0)
            negative_pooled = negative_pooled.repeat_interleave(per_prompt, 0)
            plan.added_cond = sdxl_conditioning(plan, pooled, negative_pooled, dtype, device)
        return plan

    def _sample_latents(self, image: torch.Tensor, generator) -> torch.Tensor:
        """A VAE sample of each image; one generator per image when given a list (the stock inpaint pipeline's
        `_encode_vae_image`)."""
        if not isinstance(generator, list):
            return retrieve_latents(self.vae.encode(image), generator=generator)
        samples = [retrieve_latents(self.vae.encode(one[None]), generator=g) for one, g in zip(image, generator)]
        return torch.cat(samples)

    def _preprocess_images(self, request: MTURequest, count: int) -> torch.Tensor:
        image = self.image_processor.preprocess(request.image, height=request.height, width=request.width)
        return self._broadcast(image, count)

    @staticmethod
    def _broadcast(tensor: torch.Tensor, count: int) -> torch.Tensor:
        return tensor.expand(count, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor

    def denoise(
        self, plans: list[Plan], num_inference_steps: int, eta: float, device: torch.device, callback=None
    ) -> torch.Tensor:
        """One loop for all requests: each step runs every request's guidance copies in one denoiser call.

        `callback(pipe, step, timestep, latents)` (`step_end_callback`) may replace the latents after each step.
        """
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self._num_timesteps, self._interrupt = len(self.scheduler.timesteps), False
        latents = torch.cat([plan.latents for plan in plans])
        sizes = [plan.latents.shape[0] for plan in plans]
        text = torch.cat([plan.text for plan in plans]).to(self.unet.dtype)
        tasks = [plan.request.task for plan in plans for _ in range(plan.copies * plan.latents.shape[0])]
        added = {key: torch.cat([plan.added_cond[key] for plan in plans]) for key in plans[0].added_cond}
        step_kwargs = self._step_kwargs(plans, eta)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            if self.interrupt:
                continue
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
            if callback is not None:
                latents = callback(self, i, t, latents)
        return latents

    def _step_kwargs(self, plans: list[Plan], eta: float) -> dict[str, Any]:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            if len(plans) == 1:
                kwargs["generator"] = plans[0].request.generator
            elif all(plan.request.generator is not None for plan in plans):
                kwargs["generator"] = [g for plan in plans for g in per_image_generators(plan)]
        return kwargs

    def decode(self, plans: list[Plan], latents: torch.Tensor, output_type: str) -> list[Any]:
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
