"""One loader: what a model reference holds, and the model it loads as.

- A base pipeline: a diffusers folder (`model_index.json`) or a shipped name (`shapes-base`). It loads as
  its denoiser upcycled afresh: untrained, every task computes what the base model computes.
- An MTU folder (`mtu_config.json`: `mtu upcycle`, `mtu add-task`, `MTUModel.save_pretrained`) or the
  shipped name `shapes-mtu`: the upcycled denoiser with its weights.
- An `mtu train` run's `model/` folder, any method (`mtu_config.json` + `training_method.json`): mtu,
  single-task and add-task load as MTU folders; lora / ia3 as per-task adapters on MTU's task layers; full
  as the whole fine-tuned denoiser (`mtu.baseline_models`).

`inspect_model` (`mtu.folders`, no torch) says which one a reference is without reading weights (what the
commands check before they load anything); `MTUPipeline.from_pretrained` loads any of them as a pipeline,
`load` (`mtu.load`) onto a denoiser you loaded yourself; `save_trained` writes a run's folder. Base models
named inside a config or by `base=` resolve through `resolve_base`. Every reference (a shipped name, a local
folder, a hub id "org/name" from huggingface_hub's cache) is resolved by `mtu.assets.resolve_model_path`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mtu.baseline_models import build_baseline
from mtu.config import PICKLE_WEIGHTS_NAME, WEIGHTS_NAME, MTUConfig
from mtu.folders import (  # noqa: F401 - what a model folder holds, named here beside the loader
    ADAPTERS_FILE,
    DENOISER_FILE,
    METHOD_FILE,
    PIPELINE_INDEX,
    ModelFolder,
    inspect_model,
    resolve_base,
)
from mtu.layers.adapters import adapter_parameters
from mtu.methods import AdapterSpec, Method, method_of
from mtu.model import MTUModel
from mtu.model_sizes import check_adapter, check_sizes, weight_shapes
from mtu.sampler import SamplerSettings, same_for_tasks, save_sampler
from mtu.upcycling import find_input_conv, upcycle
from mtu.utils.outputs import write_text_atomic
from mtu.utils.tensor_files import save_tensors


def load(base_model: nn.Module, path: str | Path, *, allow_pickle: bool = False) -> MTUModel:
    """Restore a saved model onto a fresh base denoiser (modified in place), in eval mode.

    Args:
        base_model: the base denoiser the model was made from (e.g. `UNet2DConditionModel.from_pretrained`).
        path: an MTU folder (`MTUModel.save_pretrained`, `mtu upcycle`), the shipped name "shapes-mtu", or the
            model/ folder of an `mtu train` run of any method.
        allow_pickle: also accept a legacy `mtu_model.bin` (unpickled with `weights_only=True`).
    """

    source = inspect_model(path)
    if source.kind == "base":
        raise ValueError(
            f"{source.name} is {source.label}, not an MTU folder: upcycle its denoiser with mtu.upcycle(unet, "
            "MTUConfig(...)), or load it whole with MTUPipeline.from_pretrained"
        )
    config = source.config()
    if config.base_model_class and type(base_model).__name__ != config.base_model_class:
        raise ValueError(
            f"{source.path} was upcycled from a {config.base_model_class} "
            f"({config.base_model_name_or_path or 'unknown path'}), not a {type(base_model).__name__}"
        )
    check_weight_sizes(source, config, base_model)  # before a tensor is made from the config's sizes
    state_dict = read_weights(source.path, allow_pickle)
    if not (source.path / WEIGHTS_NAME).is_file():  # a legacy pickle has no header: its loaded shapes then
        check_sizes(config, {key: tuple(value.shape) for key, value in state_dict.items()}, source.path, None)
    if source.has_experts:
        model = upcycle(base_model, config)
    else:
        adapter = AdapterSpec(**source.adapter) if source.adapter else None
        model = build_baseline(base_model, source.method, config, adapter)
    model.load_mtu_state_dict(state_dict)
    _load_baseline_weights(model, source.path, source.method)
    return model.eval()


def check_weight_sizes(source: ModelFolder, config: MTUConfig, base_model: nn.Module) -> None:
    """Every size `config` and the adapter ask for against the shapes in the weights' headers (`mtu.model_sizes`):
    a folder builds a model only as large as its own weights."""
    weights = source.path / WEIGHTS_NAME
    if weights.is_file():
        conv = base_model.get_submodule(find_input_conv(base_model))
        check_sizes(config, weight_shapes(weights), weights, getattr(conv, "in_channels", None))
    adapters = source.path / ADAPTERS_FILE
    shapes = weight_shapes(adapters) if adapters.is_file() else None
    check_adapter(source.method, source.adapter, shapes, source.path / METHOD_FILE)


def read_weights(folder: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The MTU weights of `folder`, checked (`check_weights`); a pickle file only with `allow_pickle`."""
    safetensors_path, pickle_path = folder / WEIGHTS_NAME, folder / PICKLE_WEIGHTS_NAME
    if safetensors_path.is_file():
        try:
            return check_weights(load_file(safetensors_path), safetensors_path)
        except SafetensorError as error:  # truncated or not a safetensors file at all
            raise ValueError(f"{safetensors_path} is damaged or not a safetensors file ({error})") from None
    if pickle_path.is_file():
        if not allow_pickle:
            raise ValueError(
                f"{pickle_path} is a pickle file, which can run code when loaded; convert it to {WEIGHTS_NAME}, "
                "or pass allow_pickle=True if you trust its author"
            )
        return check_weights(torch.load(pickle_path, map_location="cpu", weights_only=True), pickle_path)
    raise FileNotFoundError(f"no MTU weights in {folder}: expected {WEIGHTS_NAME} (written by save_pretrained)")


def check_weights(state_dict: dict, path: Path) -> dict[str, torch.Tensor]:
    """Refuse weights that would load without a word but generate nothing useful.

    `copy_` casts integer tensors to float silently, and one NaN spreads through every later layer
    (an all-black image); both mean the file is not a trained MTU model.
    """
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a dict of named tensors")
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{path}: {key} is {kind}, not a floating-point tensor; these are not MTU weights")
        if not torch.isfinite(value).all():
            raise ValueError(f"{path}: {key} holds NaN or infinite values; the file is damaged or from a diverged run")
    return state_dict


def save_trained(
    model: MTUModel,
    folder: str | Path,
    method: Method | str,
    adapter: AdapterSpec | None = None,
    sampler: SamplerSettings | None = None,
) -> None:
    """Write a trained model of any method: MTU weights (`save_pretrained`), adapters or the whole denoiser if
    the method has them, and `training_method.json` (what `inspect_model` reads); with `sampler`, also
    `sampler.json` giving every task those settings (`mtu.sampler`)."""
    folder, method = Path(folder), Method.parse(method)
    model.save_pretrained(folder)
    if method.adapters:
        save_tensors(folder / ADAPTERS_FILE, adapter_parameters(model.base_model))
    if method.whole_denoiser:
        save_tensors(folder / DENOISER_FILE, model.base_model.state_dict())
    info = {"method": method.value, "adapter": None if adapter is None else adapter.__dict__}
    write_text_atomic(folder / METHOD_FILE, json.dumps(info, indent=1) + "\n")
    if sampler is not None:
        save_sampler(folder, same_for_tasks(model.task_names, sampler))


def load_weights(model: MTUModel, folder: str | Path, method: Method | str | None = None) -> None:
    """Copy the weights `save_trained` wrote into a model of the same method and config (exact copy)."""
    model.load_mtu_state_dict(read_weights(Path(folder)))
    _load_baseline_weights(model, Path(folder), method_of(method))


def _load_baseline_weights(model: MTUModel, folder: Path, method: Method | None) -> None:
    """What a baseline saves beyond the MTU weights: lora / ia3 adapters, or a full run's denoiser."""
    with torch.no_grad():
        if method is not None and method.adapters:
            saved, own = load_file(folder / ADAPTERS_FILE), adapter_parameters(model.base_model)
            if set(saved) != set(own):
                raise ValueError(
                    f"adapter weights in {folder} do not match the model ({len(saved)} saved, {len(own)} expected)"
                )
            for name, parameter in own.items():
                parameter.copy_(saved[name])
        if method is not None and method.whole_denoiser:
            model.base_model.load_state_dict(load_file(folder / DENOISER_FILE))
