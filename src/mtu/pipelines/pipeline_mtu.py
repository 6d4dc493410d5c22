"""`MTUPipeline`: text-to-image, editing, super-resolution, removal and inpainting from one MTU denoiser.

Each task follows the stock pipeline its export runs in, step for step (same noise draws, same
guidance arithmetic), so `mtu export` + the stock pipeline reproduces `MTUPipeline`'s images:
- t2i: `StableDiffusionPipeline` (text classifier-free guidance);
- edit, sr, remove: `StableDiffusionInstructPix2PixPipeline` (image latent concatenated, dual guidance);
- inpaint: `StableDiffusionInpaintPipeline` (mask + masked-image latent), plus pasting back the pixels
  outside the mask (`preserve_unmasked`).
Requests of different tasks can share one denoising loop (`run_batch`): the MTU model takes a task
per sample, which adapter switching (LoRA) cannot do. Requests are checked and planned in
`mtu.pipelines.requests`; this module loads, encodes, runs the loop and decodes.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils.torch_utils import randn_tensor

from mtu.conditioning import conditioning_channels, denoiser_input, latent_mask, mask_image
from mtu.config import MTUConfig
from mtu.limits import check_steps
from mtu.model import MTUModel, concat_task_inputs
from mtu.pipelines.inputs import tokenize
from mtu.pipelines.requests import (
    MTUPipelineOutput,
    MTURequest,
    Plan,
    check_request,
    guidance_plan,
    sdxl_conditioning,
)
from mtu.pipelines.sampling import StoredSamplers

__all__ = ["MTUPipeline", "MTUPipelineOutput", "MTURequest"]


class MTUPipeline(DiffusionPipeline, StoredSamplers):
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

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        base: str | Path | None = None,
        config: MTUConfig | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> MTUPipeline:
        """Load any model `mtu` knows (`mtu.loading`), on the base pipeline's text encoders, VAE and scheduler.

        Args:
            pretrained_model_name_or_path: a folder or shipped name:
                - a base pipeline (a diffusers folder, "shapes-base"): its denoiser upcycled afresh with
                  `config` (default: the five built-in tasks, 4 experts); untrained, every task computes
                  what the base model computes;
                - an MTU folder (`mtu upcycle`, `mtu add-task`, `MTUModel.save_pretrained`) or "shapes-mtu";
                its stored sampler settings (`sampler.json`, `mtu.sampler`) become each task's defaults;
                - an `mtu train` run's model/ folder of any method (mtu, single-task, add-task, lora, ia3,
                  full). A lora / ia3 model switches adapters per task: one task per denoising loop.
            base: the base pipeline of an MTU folder or run (default: the one its config names).
            config: the `MTUConfig` of a fresh upcycle (base pipelines only).
            allow_pickle: accept a legacy `mtu_model.bin` (see `mtu.load`).
            kwargs: passed to `DiffusionPipeline.from_pretrained` (e.g. torch_dtype).

        Example:
            >>> MTUPipeline.from_pretrained("shapes-base", config=MTUConfig(tasks=["t2i", "edit"]))
            >>> MTUPipeline.from_pretrained("runs/lora/model")("edit", "make it blue", image=picture)
        """
        from mtu.loading import inspect_model, load
        from mtu.sampler import load_sampler
        from mtu.upcycle import upcycle

        source = inspect_model(pretrained_model_name_or_path)
        if config is not None and source.kind != "base":
            raise ValueError(f"{source.name} is {source.label}, not a base pipeline: a config upcycles a base")
        parts = DiffusionPipeline.from_pretrained(source.base_reference(base), **kwargs).components
        if source.kind == "base":
            config = config or MTUConfig()
            named = config.base_model_name_or_path or str(pretrained_model_name_or_path)
            unet = upcycle(parts["unet"], dataclasses.replace(config, base_model_name_or_path=named)).eval()
        else:
            unet = load(parts["unet"], source.path, allow_pickle=allow_pickle)
        pipe = cls.from_stock(parts, unet)
        if source.kind != "base":
            pipe.use_samplers(load_sampler(source.path, unet.task_names), scheduler_given="scheduler" in kwargs)
        return pipe

    @classmethod
    def from_base(
        cls,
        base: str | Path,
        mtu_model: str | Path | None = None,
        config: MTUConfig | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> MTUPipeline:
        """`from_pretrained(mtu_model, base=base)`, or `from_pretrained(base, config=config)` without `mtu_model`."""
        if mtu_model is not None:
            return cls.from_pretrained(mtu_model, base=base, config=config, allow_pickle=allow_pickle, **kwargs)
        return cls.from_pretrained(base, config=config, allow_pickle=allow_pickle, **kwargs)

    @classmethod
    def from_mtu(cls, mtu_model: str | Path, base: str | Path | None = None, **kwargs: Any) -> MTUPipeline:
        """`from_pretrained(mtu_model, base=base)`: kept for callers written before it."""
        return cls.from_pretrained(mtu_model, base=base, **kwargs)

    @classmethod
    def from_stock(cls, components: dict[str, Any], unet: torch.nn.Module) -> MTUPipeline:
        """An MTUPipeline of a stock pipeline's `components` around the MTU denoiser `unet`."""
        names = ("vae", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2")
        return cls(unet=unet, **{name: components.get(name) for name in names})

    @property
    def is_sdxl(self) -> bool:
        return self.text_encoder_2 is not None

    def __call__(
        self,
        task: str,
        prompt: str | list[str] = "",
        *,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        eta: float = 0.0,
        **request: Any,
    ):
        """Run one task. Arguments are those of `MTURequest` plus the loop settings; sampler settings left out
        are the task's stored ones (`pipe.samplers`), else 50 steps at guidance 7.5.

        Returns:
            `MTUPipelineOutput` with `images` (PIL list, numpy array, torch tensor or latents per `output_type`).
        """
        images = self.run_batch([MTURequest(task, prompt, **request)], num_inference_steps, output_type, eta)[0]
        return MTUPipelineOutput(images=images) if return_dict else (images,)

    @property
    def mixes_tasks(self) -> bool:
        """Whether one denoising loop serves several tasks; a lora / ia3 model switches adapters per task."""
        from mtu.baselines import has_adapters

        return not has_adapters(self.unet)

    @torch.no_grad()
    def run_batch(
        self,
        requests: list[MTURequest],
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        eta: float = 0.0,
    ) -> list[Any]:
        """Run requests of any tasks through one denoising loop; returns each request's images, in order.

        With a deterministic scheduler (DDIM with eta=0, the default of the shipped model), each request's
        images equal those of a separate call with the same generator. A lora / ia3 model (`mixes_tasks`
        False) runs requests of one task per call, through that task's adapter. `num_inference_steps` None
        takes the tasks' stored steps (`pipe.samplers`), else 50; the loop runs with the tasks' stored scheduler.
        """
        requests = [self.check_inputs(request) for request in requests]
        tasks = [request.task for request in requests]
        num_inference_steps = check_steps(self.loop_steps(tasks, num_inference_steps))
        sizes = {(r.height, r.width) for r in requests}
        if len(sizes) > 1:
            raise ValueError(
                f"requests in one batch must share an output size; got {sorted(sizes)}: batch them separately"
            )
        self._switch_adapters(requests)
        device = self._execution_device
        with self.task_scheduler(tasks):
            plans = [self.prepare_request(request, device) for request in requests]
            latents = self.denoise(plans, num_inference_steps, eta, device)
        return self.decode(plans, latents, output_type)

    def _switch_adapters(self, requests: list[MTURequest]) -> None:
        """Per-task adapters (lora / ia3) switch the whole model: one task per loop, its adapter active."""
        from mtu.baselines import activate, has_adapters

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
        return self.fill_guidance(request)

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

    def prepare_request(self, request: MTURequest, device: torch.device) -> Plan:
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

        plan = guidance_plan(request, spec, text, negative, condition)
        plan.latents, plan.paste = latents, paste
        if self.is_sdxl:
            pooled = pooled.repeat_interleave(per_prompt, 0)
            negative_pooled = negative_pooled.repeat_interleave(per_prompt, 0)
            plan.added_cond = sdxl_conditioning(plan, pooled, negative_pooled, dtype, device)
        return plan

    def _preprocess_images(self, request: MTURequest, count: int) -> torch.Tensor:
        image = self.image_processor.preprocess(request.image, height=request.height, width=request.width)
        return self._broadcast(image, count)

    @staticmethod
    def _broadcast(tensor: torch.Tensor, count: int) -> torch.Tensor:
        return tensor.expand(count, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor

    def denoise(self, plans: list[Plan], num_inference_steps: int, eta: float, device: torch.device) -> torch.Tensor:
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

    def _step_kwargs(self, plans: list[Plan], eta: float) -> dict[str, Any]:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            if len(plans) == 1:
                kwargs["generator"] = plans[0].request.generator
            elif all(plan.request.generator is not None for plan in plans):
                kwargs["generator"] = [plan.request.generator for plan in plans for _ in range(plan.latents.shape[0])]
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
