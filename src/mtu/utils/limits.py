"""Bounds on what one call may ask for, shared by the pipeline, the command line and the server.

A diffusion call's memory grows with the image area and its time with the steps, so an unchecked number
(a 9000 px input, `--resolution 100000`, `--task sr` on a 512 px image) can take the whole machine. Every
entry point checks its numbers here before doing any work, with the same limits and the same messages.

    MTU_MAX_SIDE=2048 mtu generate ...   # raise the image side limit (inputs and outputs)

This module imports only the standard library: the command line checks arguments before loading torch.
"""

from __future__ import annotations

import math
import numbers
import os

DEFAULT_MAX_SIDE = 1024
MAX_SIDE_VARIABLE = "MTU_MAX_SIDE"
# Diffusers schedulers have 1000 training timesteps; a sampler cannot take more steps than that.
MAX_STEPS = 1000
# Images one call generates (prompts x images per prompt): each is a full denoising batch entry.
MAX_IMAGES = 64
MAX_PORT = 65535  # TCP ports are 16-bit
WAIT_S = (0.001, 86400.0)  # seconds a server waits for a result: finite (inf never gave a request up), a day at most
# Guidance scales: SD's text guidance is 7.5, InstructPix2Pix's image guidance 1.5; <= 1 turns guidance off.
# Far above any useful value, and finite: `--guidance inf` gave an all-black image with exit 0.
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's signed 64-bit range
MAX_THREADS = 4096

# Every request setting: (a whole number?, lowest, highest). `check_settings` is the one validator the command
# line, `MTUPipeline.__call__` and the server apply, each naming the settings its own way.
SETTINGS = {
    "steps": (True, 1, MAX_STEPS),
    "guidance": (False, 0.0, MAX_GUIDANCE),
    "image_guidance": (False, 0.0, MAX_GUIDANCE),
    "seed": (True, 0, MAX_SEED),
    "num_images": (True, 1, MAX_IMAGES),
    "threads": (True, 1, MAX_THREADS),
}
CLI_NAMES = {key: "--" + key.replace("_", "-") for key in SETTINGS}
# How `MTUPipeline.__call__` and `SamplerSettings` spell them (diffusers' argument names).
PIPELINE_NAMES = {
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "image_guidance": "image_guidance_scale",
    "num_images": "num_images_per_prompt",
}
# Training records are resized to the training resolution as they are read, so photos larger than the
# inference limit are ordinary data (DIV2K is 2040 px wide): only bombs beyond this side are refused.
TRAINING_MAX_SIDE = 8192


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for refusals: a message quotes what it refused without echoing a
    308-digit seed or a megabyte of text back.

        >>> shown(10**308)   # its first 57 digits, then '... (309 characters)'
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def max_side() -> int:
    """Largest image side (pixels) of any input or output: `MTU_MAX_SIDE`, else 1024. Read on every call."""
    raw = os.environ.get(MAX_SIDE_VARIABLE)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_SIDE
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_SIDE_VARIABLE}={shown(raw)} must be a whole number of pixels, e.g. 2048") from None
    if value < 1:
        raise ValueError(f"{MAX_SIDE_VARIABLE}={shown(raw)} must be >= 1")
    return value


def max_pixels(limit: int | None = None) -> int:
    """Largest image area (pixels): a square of `limit`, by default of `max_side()`."""
    return (limit or max_side()) ** 2


def training_max_side() -> int:
    """Largest side of a training record's image: `TRAINING_MAX_SIDE`, or `max_side()` when that is larger."""
    return max(TRAINING_MAX_SIDE, max_side())


def check_whole(name: str, value: object, low: int, high: int | None = None) -> int:
    """`value` as an int if it is a whole number in [low, high] (2.0 is 2; 2.5, NaN, True and text are not);
    ValueError naming `name` otherwise."""
    number = None
    if isinstance(value, bool):
        pass  # True is 1 to Python, but no one means a count by it
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    if number is None or number < low or (high is not None and number > high):
        bound = f"from {low} to {_spelt(high)}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number {bound}, got {shown(value)}")
    return number


def check_number(name: str, value: object, low: float, high: float) -> float:
    """`value` as a float if it is a finite number in [low, high]; ValueError naming `name` otherwise."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def check_count(name: str, value: object, maximum: int | None = None) -> int:
    """`value` if it is a whole number in [1, maximum]; ValueError naming `name` otherwise."""
    return check_whole(name, value, 1, maximum)


def check_settings(names: dict[str, str] | None = None, max_steps: int = MAX_STEPS, **values: object) -> dict:
    """The request settings `values` (keys of `SETTINGS`: steps, guidance, ...) checked and converted; None
    stays None (the caller's default applies). ValueError naming the first bad one as `names` spells it
    (default: the command line's `--steps`, ...); `max_steps` lowers the steps' bound (a server's limit).

        >>> check_settings(steps=2.0, guidance=7.5)          # {'steps': 2, 'guidance': 7.5}
        >>> check_settings(guidance=float("nan"))            # ValueError: --guidance must be a number from 0 to 30
    """
    names = {**CLI_NAMES, **(names or {})}
    checked = {}
    for key, value in values.items():
        whole, low, high = SETTINGS[key]
        high = min(high, max_steps) if key == "steps" else high
        if value is None:
            checked[key] = None
        elif whole:
            checked[key] = check_whole(names[key], value, low, high)
        else:
            checked[key] = check_number(names[key], value, low, high)
    return checked


def setting_range(key: str) -> str:
    """The range of a setting for --help texts, e.g. "1-1000"."""
    whole, low, high = SETTINGS[key]
    return f"{low} to {_spelt(high)}" if whole else f"{low:g} to {high:g}"


def _spelt(bound: int) -> str:
    return "2**63 - 1" if bound == MAX_SEED else str(bound)


def check_steps(steps: object, name: str = "num_inference_steps", scheduler: object = None) -> int:
    """Denoising steps: 1 to `MAX_STEPS` (0 divides by zero in the schedulers; negative ones ran no step), and
    with `scheduler` (a diffusers scheduler) no more than it can take (`scheduler_max_steps`)."""
    steps = check_settings({"steps": name}, steps=steps)["steps"]
    if scheduler is not None:
        limit, why = scheduler_max_steps(scheduler)
        if steps > limit:
            raise ValueError(f"{name} {steps} is more than this model's scheduler can take: at most {limit} ({why})")
    return steps


def scheduler_max_steps(scheduler: object) -> tuple[int, str]:
    """The most denoising steps `scheduler` (a diffusers scheduler) can take, and why, in words.

    A scheduler samples from its `num_train_timesteps`; with "leading" spacing it adds `steps_offset` to every
    timestep, so a 1000-timestep DDIM with offset 1 cannot take 1000 steps (it would ask for timestep 1000:
    IndexError).
    """
    config = getattr(scheduler, "config", {})
    timesteps = int(config.get("num_train_timesteps", MAX_STEPS))
    offset = int(config.get("steps_offset", 0) or 0)
    name = type(scheduler).__name__
    if config.get("timestep_spacing", "leading") == "leading" and offset > 0:
        return timesteps - offset, f"{name}: {timesteps} training timesteps, steps_offset {offset}"
    return timesteps, f"{name}: {timesteps} training timesteps"


def check_side(name: str, value: object) -> int:
    """A requested image side (e.g. `--resolution`): 1 to `max_side()` pixels."""
    limit, side = max_side(), check_count(name, value)
    if side > limit:
        raise ValueError(f"refused: {name} {side} is over the limit of {limit} pixels a side ({_raise_hint(side)})")
    return side


def check_image_size(width: int, height: int, what: str = "image", limit: int | None = None) -> None:
    """Refuse an image (input or output) that is empty or has a side over `limit` (default `max_side()`)."""
    if width < 1 or height < 1:
        raise ValueError(f"refused: {what} of {width} x {height} pixels is empty")
    limit = limit or max_side()
    if max(width, height) > limit:
        raise ValueError(
            f"refused: {what} of {width} x {height} pixels is over the limit of {limit} pixels a side "
            f"({_raise_hint(max(width, height))})"
        )


def check_pixel_count(pixels: int, what: str = "image", limit: int | None = None) -> None:
    """Refuse an image known only by its area (PIL's decompression-bomb errors give no width and height)."""
    limit = limit or max_side()
    if pixels > max_pixels(limit):
        raise ValueError(
            f"refused: {what} of {pixels:,} pixels is over the limit of {limit} x {limit} pixels "
            f"(set {MAX_SIDE_VARIABLE} to its longer side, at least {math.isqrt(pixels)}, to raise it)"
        )


def _raise_hint(side: int) -> str:
    return f"set {MAX_SIDE_VARIABLE}={side} to raise it"


def check_text(text: str, name: str = "prompt") -> str:
    """Text a tokenizer can read: valid UTF-8 (a byte string mis-decoded from argv holds lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {shown(text)} is not valid UTF-8 text: re-encode it as UTF-8") from None
    return text
