"""What a model reference holds, from its marker files alone (no weights read, no torch imported).

A base pipeline (`model_index.json`), an MTU folder (`mtu_config.json`) or an `mtu train` run's model/ folder
(`training_method.json` beside the MTU config). `inspect_model` tells them apart; `mtu.loading` loads them.
Commands and the training config check references with it before anything heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mtu.assets import resolve_model_path
from mtu.config import CONFIG_NAME, MTUConfig
from mtu.methods import Method

METHOD_FILE = "training_method.json"  # `mtu train` writes it beside the MTU weights: the method and its adapter
ADAPTERS_FILE = "adapters.safetensors"  # lora / ia3: every task's adapter weights
DENOISER_FILE = "denoiser.safetensors"  # full: every weight of the fine-tuned denoiser
PIPELINE_INDEX = "model_index.json"  # a diffusers pipeline folder


def resolve_base(reference: str | Path) -> str:
    """The folder of a base model reference (`resolve_model_path`: a shipped name, a local folder, or a hub id
    from huggingface_hub's cache), as a string for diffusers. FileNotFoundError otherwise."""
    return str(resolve_model_path(reference))


@dataclass(frozen=True)
class ModelFolder:
    """What a model reference holds, found by `inspect_model` from its marker files (no weights read).

    Attributes:
        name: the reference as given (a folder or a shipped name), for messages.
        path: its folder.
        kind: "base" (a diffusers pipeline), "mtu" (an MTU folder) or "run" (an `mtu train` model/ folder).
        method: a run's training method (`mtu.methods.Method`); None otherwise.
        adapter: a lora / ia3 run's `AdapterSpec` fields.
    """

    name: str
    path: Path
    kind: str
    method: Method | None = None
    adapter: dict | None = None

    @property
    def label(self) -> str:
        """What it is, for messages: "a base pipeline", "an MTU folder", "a lora run"."""
        return {"base": "a base pipeline", "mtu": "an MTU folder"}.get(self.kind) or f"a {self.method} run"

    @property
    def has_experts(self) -> bool:
        """False for the baselines (lora, ia3, full): their folders hold task layers, but no experts to route."""
        return self.method is None or self.method.has_experts

    @property
    def mixes_tasks(self) -> bool:
        """Whether one denoising loop can serve several tasks; per-task adapters switch the whole model."""
        return self.method is None or self.method.mixes_tasks

    def config(self) -> MTUConfig:
        """The MTU config of an MTU folder or a run (its tasks, sizes and base model)."""
        if self.kind == "base":
            raise ValueError(f"{self.name} is {self.label}: it has no MTU config until upcycled")
        return MTUConfig.load(self.path)

    def task_names(self, config: MTUConfig | None = None) -> list[str]:
        """The tasks it serves once loaded; a base pipeline serves `config`'s (default: the built-in five)."""
        return (config or MTUConfig()).task_names if self.kind == "base" else self.config().task_names

    def base_reference(self, base: str | Path | None = None) -> str:
        """The base pipeline to load: the folder itself for a base, else `base` or the one its config names."""
        if self.kind == "base":
            if base is not None:
                raise ValueError(f"{self.name} is {self.label} itself: base= applies to MTU folders and runs")
            return str(self.path)
        base = base or self.config().base_model_name_or_path
        if base is None:
            raise ValueError(f"{self.name} does not name its base model: pass base=<base model folder> (--base)")
        return resolve_base(base)

    def inputs(self, base: str | Path | None = None) -> list[Path]:
        """The folders loading it reads: itself and, for an MTU folder or a run, its base pipeline when found.
        A command's outputs must stay out of them (`mtu.utils.outputs.check_not_source`)."""
        found = [self.path]
        if self.kind != "base":
            try:
                found.append(Path(self.base_reference(base)))
            except (FileNotFoundError, ValueError):
                pass  # no base to find: loading will say so, and nothing of it can be written over
        return found

    def check_exportable(self) -> None:
        """Refuse, in one line, to fold a model whose tasks are adapters into a stock denoiser."""
        if self.method is not None and not self.method.exports:
            raise ValueError(
                f"{self.name} is {self.label}: its per-task adapters do not fold into one stock denoiser, so it "
                "cannot be exported; export an MTU folder or a full run (mtu generate / mtu serve run this one)"
            )

    def check_extendable(self) -> None:
        """Refuse, in one line, to add a task to anything but a model with experts (an MTU folder or run)."""
        if self.kind == "base":
            raise ValueError(f"{self.name} is {self.label}; add-task extends MTU models (make one with mtu upcycle)")
        if not self.has_experts:
            raise ValueError(f"{self.name} is a {self.method} run, which has no experts; add-task extends MTU models")


def inspect_model(name_or_path: str | Path) -> ModelFolder:
    """What `name_or_path` (a folder or shipped name) holds, from its marker files; ValueError if nothing `mtu`
    loads, FileNotFoundError if it does not exist."""
    path = resolve_model_path(name_or_path)
    name = str(name_or_path)
    if (path / METHOD_FILE).is_file():
        info = _method_info(path / METHOD_FILE)
        return ModelFolder(name, path, "run", Method(info["method"]), info.get("adapter"))
    if (path / CONFIG_NAME).is_file():
        return ModelFolder(name, path, "mtu")
    if (path / PIPELINE_INDEX).is_file():
        return ModelFolder(name, path, "base")
    raise ValueError(
        f"{path} holds neither {CONFIG_NAME} (an MTU folder or an `mtu train` run's model/) nor {PIPELINE_INDEX} "
        "(a diffusers pipeline)"
    )


def _method_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # JSON and UTF-8 errors alike
        raise ValueError(f"{path}: {error}") from None
    methods = [method.value for method in Method]
    if not isinstance(info, dict) or info.get("method") not in methods:
        raise ValueError(f"{path} names no training method of {methods}: {info!r}")
    if not isinstance(info.get("adapter"), (dict, type(None))):
        raise ValueError(f"{path}: adapter must be an object of AdapterSpec fields, got {info['adapter']!r}")
    return info
