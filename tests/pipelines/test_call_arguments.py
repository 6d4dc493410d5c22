"""`MTUPipeline.__call__` spelled out like diffusers' pipelines: every argument named, with diffusers' meaning."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from mtu.pipelines import MTUPipeline
from tests.helpers import mtu_pipeline, picture, tiny_sd_components

STEPS = 3
DIFFUSERS_NAMES = (
    "image mask_image negative_prompt guidance_scale image_guidance_scale num_inference_steps "
    "num_images_per_prompt generator latents prompt_embeds callback_on_step_end output_type return_dict"
).split()


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    return tiny_sd_components(tmp_path_factory.mktemp("call"))


@pytest.fixture(scope="module")
def pipe(components):
    return mtu_pipeline(components)


@pytest.fixture(scope="module")
def stock(pipe, components):
    """t2i exported into the stock StableDiffusionPipeline: the reference for diffusers' meanings."""
    parts = {**components, "unet": pipe.unet.export("t2i").eval()}
    stock = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    return stock


def _t2i(pipe, **kwargs):
    settings = {"num_inference_steps": STEPS, "guidance_scale": 3.0, "output_type": "np", **kwargs}
    return pipe("t2i", "a red circle", **settings).images


def _noise(seed: int, count: int = 1) -> torch.Tensor:
    return randn_tensor((count, 4, 8, 8), generator=torch.Generator().manual_seed(seed))


def test_every_argument_is_named_in_the_signature_and_the_docstring():
    parameters = inspect.signature(MTUPipeline.__call__).parameters
    doc = MTUPipeline.__call__.__doc__
    for name in DIFFUSERS_NAMES:
        assert name in parameters and f"            {name}:" in doc, name
        assert parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, name


def test_latents_mean_what_they_mean_in_diffusers(pipe, stock):
    latents = _noise(7)
    ours = _t2i(pipe, latents=latents)
    theirs = stock("a red circle", num_inference_steps=STEPS, guidance_scale=3.0, output_type="np", latents=latents)
    np.testing.assert_allclose(ours, theirs.images, atol=1e-4)
    drawn = _t2i(pipe, generator=torch.Generator().manual_seed(7))  # the same noise, drawn from its generator
    np.testing.assert_allclose(ours, drawn, atol=1e-6)
    with pytest.raises(ValueError, match=r"latents must be a tensor of shape \(2, 4, 8, 8\)"):
        _t2i(pipe, latents=latents, num_images_per_prompt=2)


def test_callback_on_step_end_sees_and_replaces_the_latents(pipe, stock):
    seen = []

    def halve_first(pipeline, step, timestep, kwargs):
        seen.append((step, int(timestep), tuple(kwargs["latents"].shape), pipeline.num_timesteps))
        return {"latents": kwargs["latents"] * 0.5} if step == 0 else {}

    ours = _t2i(pipe, latents=_noise(3), callback_on_step_end=halve_first)
    assert [s[0] for s in seen] == [0, 1, 2] and {s[2:] for s in seen} == {((1, 4, 8, 8), STEPS)}
    theirs = stock(
        "a red circle",
        num_inference_steps=STEPS,
        guidance_scale=3.0,
        output_type="np",
        latents=_noise(3),
        callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5} if i == 0 else {},
    )
    np.testing.assert_allclose(ours, theirs.images, atol=1e-4)
    assert not np.allclose(ours, _t2i(pipe, latents=_noise(3)), atol=1e-3)

    def stop(pipeline, step, timestep, kwargs):
        seen.append(step)
        pipeline._interrupt = True  # diffusers' way to end a loop early
        return {}

    seen.clear()
    _t2i(pipe, callback_on_step_end=stop)
    assert seen == [0]
    with pytest.raises(ValueError, match=r"can only be \['latents'\]"):
        _t2i(pipe, callback_on_step_end=stop, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_prompt_embeds_replace_the_prompt(pipe):
    embeds, _ = pipe.encode_prompt(["a red circle"], pipe.device)
    negative, _ = pipe.encode_prompt([""], pipe.device)
    expected = _t2i(pipe, generator=torch.Generator().manual_seed(1))
    settings = {"num_inference_steps": STEPS, "guidance_scale": 3.0, "output_type": "np"}
    given = pipe("t2i", prompt_embeds=embeds, generator=torch.Generator().manual_seed(1), **settings).images
    np.testing.assert_allclose(given, expected, atol=1e-6)
    both = pipe("t2i", prompt_embeds=embeds, negative_prompt_embeds=negative, **settings)
    assert both.images.shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="pass prompt or prompt_embeds, not both"):
        pipe("t2i", "a red circle", prompt_embeds=embeds)
    with pytest.raises(ValueError, match="negative_prompt_embeds .* needs prompt_embeds of its shape"):
        pipe("t2i", prompt_embeds=embeds, negative_prompt_embeds=negative[:, :3])


def test_a_generator_per_image_and_the_output_types(pipe):
    generators = [torch.Generator().manual_seed(seed) for seed in (4, 5)]
    images = pipe("edit", "make it blue", picture(1), num_images_per_prompt=2, generator=generators,
                  num_inference_steps=STEPS, output_type="np").images  # fmt: skip
    alone = pipe("edit", "make it blue", picture(1), generator=torch.Generator().manual_seed(5),
                 num_inference_steps=STEPS, output_type="np").images  # fmt: skip
    # A batch of 2 and a batch of 1 take different GEMM paths: float32 round-off of ~1e-6 (seen 1.2e-6).
    np.testing.assert_allclose(images[1:], alone, atol=1e-5)
    with pytest.raises(ValueError, match="got 1 generators for 2 images"):
        pipe("t2i", num_images_per_prompt=2, generator=generators[:1])
    latents = pipe("t2i", "x", num_inference_steps=1, output_type="latent", return_dict=False)[0]
    assert isinstance(latents, torch.Tensor) and latents.shape == (1, 4, 8, 8)
    assert pipe("t2i", "x", num_inference_steps=1, output_type="pt").images.shape == (1, 3, 16, 16)
