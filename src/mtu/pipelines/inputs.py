"""What `MTUPipeline` checks and measures in a request before any compute: image sizes, prompts, tokens."""

from __future__ import annotations

import logging

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import PipelineImageInput

from mtu.utils.limits import MAX_IMAGES, check_count, check_image_size, check_text

logger = logging.getLogger(__name__)


def image_count(image: PipelineImageInput) -> int:
    if isinstance(image, list):
        return len(image)
    if isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 4:
        return image.shape[0]
    return 1


def image_size(image: PipelineImageInput) -> tuple[int, int]:
    """(height, width) of the first image of a PIL / numpy (HWC) / torch (CHW) input."""
    first = image[0] if isinstance(image, list) else image
    if isinstance(first, PIL.Image.Image):
        return first.height, first.width
    if isinstance(first, np.ndarray):
        return first.shape[-3:-1] if first.ndim == 4 else first.shape[:2]
    return tuple(first.shape[-2:])


def check_bounds(request, height: int, width: int, upscale: int = 1) -> None:
    """Refuse inputs and outputs over `mtu.utils.limits`, before any compute.

    `upscale` is how many times its input a side the output is when the request does not give its size
    (`TaskSpec.upscale`: sr's output is 4x its input), named in the message.
    """
    for name in ("image", "mask_image"):
        if getattr(request, name) is not None:
            input_height, input_width = image_size(getattr(request, name))
            check_image_size(input_width, input_height, what=f"input {name}")
    what = "output"
    if upscale > 1 and request.image is not None and (request.height is None or request.width is None):
        input_height, input_width = image_size(request.image)
        what = f"{request.task} output ({upscale} x the {input_width} x {input_height} input)"
    check_image_size(width, height, what=what)
    prompts = request.prompts
    for prompt in prompts:
        check_text(prompt)
    negative = request.negative_prompt
    for text in [negative] if isinstance(negative, str) else negative or []:
        check_text(text, "negative_prompt")
    check_count(
        "images per call (prompts x num_images_per_prompt)", len(prompts) * request.num_images_per_prompt, MAX_IMAGES
    )


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to the encoder's length; a warning names the tokens of a too-long prompt that it drops."""
    max_length = tokenizer.model_max_length
    # verbose=False: transformers' own length warning names no prompt and says nothing of the cut.
    for index, ids in enumerate(tokenizer(prompts, verbose=False).input_ids):
        if len(ids) > max_length:
            # Truncation keeps the first max_length - 1 tokens and the end token: these are the ones lost.
            dropped = tokenizer.decode(ids[max_length - 1 : -1], skip_special_tokens=True)
            logger.warning(
                "prompt %d is %d tokens, the text encoder reads %d: the last %d tokens are dropped (%r)",
                index,
                len(ids),
                max_length,
                len(ids) - max_length,
                dropped if len(dropped) <= 80 else dropped[:77] + "...",
            )
    return tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids
