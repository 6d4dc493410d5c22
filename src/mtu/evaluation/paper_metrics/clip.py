"""CLIP-based metrics: CLIP score (t2i), directional and image similarity (edit, InstructPix2Pix's pair).

torchmetrics' `CLIPScore` cannot run beside transformers 5: it divides the result of
`CLIPModel.get_image_features` by its norm, and that method now returns a `BaseModelOutputWithPooling`.
So the embeddings are taken here, from any `CLIPModel` and its `CLIPProcessor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def _pooled(output) -> torch.Tensor:
    # transformers < 5 returns the projected embedding; 5.x a model output holding it as pooler_output.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipFeatures:
    """Unit-norm CLIP embeddings of images and texts.

    Args:
        model: a `transformers.CLIPModel`.
        processor: its `CLIPProcessor` (image preprocessing and tokenizer).
        batch_size: inputs per forward.
    """

    def __init__(self, model, processor, batch_size: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> ClipFeatures:
        """Load a CLIP folder offline (``local_files_only=True``); see `weights.find_clip`."""
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(str(path), local_files_only=True).to(device)
        return cls(model, CLIPProcessor.from_pretrained(str(path), local_files_only=True))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> (N, D)."""
        arrays = [np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy()) for image in images]
        features = []
        for start in range(0, len(arrays), self.batch_size):
            pixels = self.processor(images=arrays[start : start + self.batch_size], return_tensors="pt")["pixel_values"]
            features.append(_pooled(self.model.get_image_features(pixel_values=pixels.to(self.device))))
        return torch.nn.functional.normalize(torch.cat(features).float(), dim=-1)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Strings -> (N, D); captions longer than the text encoder's context are truncated."""
        limit = self.model.config.text_config.max_position_embeddings
        features = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.processor(
                text=list(texts[start : start + self.batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=limit,
            )
            features.append(
                _pooled(
                    self.model.get_text_features(
                        input_ids=tokens["input_ids"].to(self.device),
                        attention_mask=tokens["attention_mask"].to(self.device),
                    )
                )
            )
        return torch.nn.functional.normalize(torch.cat(features).float(), dim=-1)


def clip_score(clip: ClipFeatures, images: torch.Tensor, captions: Sequence[str]) -> float:
    """Mean over images of ``max(100 * cos(E_img, E_txt), 0)`` (torchmetrics' CLIPScore definition)."""
    _check_count(images, captions=captions)
    cosine = (clip.images(images) * clip.texts(captions)).sum(-1)
    return float((100 * cosine).clamp(min=0).mean())


def directional_similarity(
    clip: ClipFeatures,
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    source_captions: Sequence[str],
    target_captions: Sequence[str],
) -> float:
    """Mean ``cos(E_img(out) - E_img(in), E_txt(target caption) - E_txt(source caption))``.

    The CLIP direction metric of StyleGAN-NADA and InstructPix2Pix: does the image change the way the
    caption changes? In [-1, 1]; the paper's tables show it times 100.
    """
    _check_count(inputs, outputs=outputs, source_captions=source_captions, target_captions=target_captions)
    image_direction = clip.images(outputs) - clip.images(inputs)
    text_direction = clip.texts(target_captions) - clip.texts(source_captions)
    return float(torch.nn.functional.cosine_similarity(image_direction, text_direction, dim=-1).mean())


def image_similarity(clip: ClipFeatures, inputs: torch.Tensor, outputs: torch.Tensor) -> float:
    """Mean ``cos(E_img(in), E_img(out))``: how much of the input an edit keeps (InstructPix2Pix's x-axis)."""
    _check_count(inputs, outputs=outputs)
    return float((clip.images(inputs) * clip.images(outputs)).sum(-1).mean())


def _check_count(first, **others) -> None:
    counts = {name: len(values) for name, values in others.items()}
    if any(count != len(first) for count in counts.values()):
        raise ValueError(f"expected {len(first)} of each, got {counts}")
