"""Loading an `MTUPipeline`: any model reference `mtu.loading` resolves, on its base pipeline's components."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline

from mtu.config import MTUConfig


class MTULoaderMixin:
    """`from_pretrained` and its older spellings, for `MTUPipeline`."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        base: str | Path | None = None,
        config: MTUConfig | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ):
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
            kwargs: passed to `DiffusionPipeline.from_pretrained`. `torch_dtype=` (or, in newer diffusers,
                `dtype=`) loads every component, MTU's own layers too, in that precision; move the pipeline with
                `pipe.to("cuda")` as any diffusers pipeline.

        Example:
            >>> MTUPipeline.from_pretrained("shapes-base", config=MTUConfig(tasks=["t2i", "edit"]))
            >>> MTUPipeline.from_pretrained("runs/lora/model")("edit", "make it blue", image=picture)
            >>> MTUPipeline.from_pretrained("shapes-mtu", torch_dtype=torch.bfloat16).to("cuda")
        """
        from mtu.loading import inspect_model, load
        from mtu.sampler import load_sampler
        from mtu.upcycling import upcycle

        source = inspect_model(pretrained_model_name_or_path)
        if config is not None and source.kind != "base":
            raise ValueError(f"{source.name} is {source.label}, not a base pipeline: a config upcycles a base")
        dtype = _dtype_keyword(kwargs)
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
        return pipe if dtype is None else pipe.to(dtype=dtype)  # MTU's routers and task layers too

    @classmethod
    def from_base(
        cls,
        base: str | Path,
        mtu_model: str | Path | None = None,
        config: MTUConfig | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ):
        """`from_pretrained(mtu_model, base=base)`, or `from_pretrained(base, config=config)` without `mtu_model`."""
        if mtu_model is not None:
            return cls.from_pretrained(mtu_model, base=base, config=config, allow_pickle=allow_pickle, **kwargs)
        return cls.from_pretrained(base, config=config, allow_pickle=allow_pickle, **kwargs)

    @classmethod
    def from_mtu(cls, mtu_model: str | Path, base: str | Path | None = None, **kwargs: Any):
        """`from_pretrained(mtu_model, base=base)`: kept for callers written before it."""
        return cls.from_pretrained(mtu_model, base=base, **kwargs)

    @classmethod
    def from_stock(cls, components: dict[str, Any], unet: torch.nn.Module):
        """An MTUPipeline of a stock pipeline's `components` around the MTU denoiser `unet`."""
        names = ("vae", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2")
        return cls(unet=unet, **{name: components.get(name) for name in names})


def _dtype_keyword(kwargs: dict[str, Any]) -> torch.dtype | None:
    """The precision asked for as `torch_dtype=` or `dtype=`, put back under the name this diffusers takes
    (newer diffusers deprecate `torch_dtype`, older ones know only it)."""
    given = {key: kwargs.pop(key) for key in ("torch_dtype", "dtype") if key in kwargs}
    if len(given) > 1:
        raise ValueError("pass torch_dtype= or dtype=, not both")
    if not given:
        return None
    from diffusers.utils import deprecation_utils

    dtype = next(iter(given.values()))
    kwargs["dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"] = dtype
    return dtype
