"""How `MTUPipeline` turns prompts into the denoiser's text states, as the stock SD 1.x/2.x and SDXL pipelines do."""

from __future__ import annotations

import torch

from mtu.pipelines.inputs import tokenize
from mtu.pipelines.requests import MTURequest


class TextEncoding:
    """Mixin of `MTUPipeline`: prompt encoding with its `tokenizer` / `text_encoder` (and SDXL's second pair)."""

    @property
    def is_sdxl(self) -> bool:
        """The SDXL layout: a second text encoder, whose pooled embedding conditions the denoiser too."""
        return self.text_encoder_2 is not None

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

    def _text_states(self, request: MTURequest, device: torch.device) -> tuple:
        """(text, pooled, negative, negative pooled) per prompt: given embeddings, or encoded prompts."""
        if request.prompt_embeds is not None:
            text, pooled = request.prompt_embeds.to(device=device, dtype=self.text_encoder.dtype), None
        else:
            text, pooled = self.encode_prompt(request.prompts, device)
        if request.negative_prompt_embeds is not None:
            return text, pooled, request.negative_prompt_embeds.to(device=device, dtype=text.dtype), None
        return text, pooled, *self._negative_text(request, request.batch_size, device)
