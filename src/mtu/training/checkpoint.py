"""Checkpoints that appear whole or not at all, written as safetensors + JSON only: resuming runs no code.

A checkpoint ``<output_dir>/checkpoints/step-00000100`` holds:

- ``model/``: the trainable weights, written by `mtu.loading.save_trained` (safetensors; the
  frozen base is not copied);
- ``state.safetensors``: the optimizer moments (``optimizer.<param>.<name>``, see `mtu.utils.safe_state`) and
  the EMA weights (``ema.<i>``);
- ``state.json``: the format, `Progress`, the LR scheduler, the optimizer's param groups, the EMA's
  decay and update count, the fp16 grad scaler;
- ``rng/process-<i>.safetensors`` and ``rng/process-<i>.json``: process i's torch (CPU, CUDA) and
  python / numpy RNG states, so that a resumed run continues bit for bit;
- ``train_config.yaml``: the config of the run, checked against the resuming one.

Why not accelerate's `save_state` / `load_state`: `load_state` unpickles the RNG states, registered
objects, optimizer and scheduler (`torch.load(weights_only=False)`), so a file planted in a checkpoint
folder ran code on ``--resume``. Here a checkpoint is read only through safetensors, JSON and
`yaml.safe_load`; pickle files in it (``*.pkl``, ``*.bin``, ``*.pt``, ``*.pth``) are never opened, and a
checkpoint of the older pickle format is refused. A damaged file is reported by name, with the
previous checkpoint to resume from.

Every process writes into ``.step-00000100.tmp`` (its RNG states; the main process everything else);
once all are done the main process renames it. A crash mid-save leaves only a ``.tmp`` folder, which is
never resumed from and is cleared on the next save; an old checkpoint is renamed to a dot name before it is
deleted, so a crash mid-delete leaves no half checkpoint under a listed name either (`mtu.utils.checkpoints`,
whose verbs this module and `mtu.pretrain.checkpoint` share: `save_checkpoint(run_dir, state, keep)`,
`load_checkpoint(checkpoint, state)`, `list_checkpoints(run_dir)`, `latest_checkpoint(run_dir)`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from mtu.loading import load_weights, save_trained
from mtu.utils import checkpoints
from mtu.utils.checkpoints import CHECKPOINTS
from mtu.utils.safe_state import optimizer_from_flat, optimizer_to_flat
from mtu.utils.tensor_files import save_tensors

logger = logging.getLogger(__name__)

PREFIX = "step-"
CONFIG_FILE = "train_config.yaml"
STATE_FILE = "state.json"
TENSORS_FILE = "state.safetensors"
RNG_DIR = "rng"
MODEL_DIR = "model"
FORMAT = "mtu-train-checkpoint/1"  # state.json's "format": a later layout change can tell old from new
PICKLE_SUFFIXES = (".pkl", ".bin", ".pt", ".pth")  # what accelerate's save_state wrote; never opened here


@dataclass
class Progress:
    """Training progress saved with every checkpoint (in its ``state.json``).

    Attributes:
        step: optimizer steps taken.
        data_seed: the seed of the data stream (the config's seed, or one drawn at the start of the run).
        skipped: unreadable samples skipped so far, all processes together.
    """

    step: int = 0
    data_seed: int = 0
    skipped: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def _is_checkpoint(path: Path) -> bool:
    return path.name.startswith(PREFIX) and path.name[len(PREFIX) :].isdigit()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of the run in `run_dir` (its output_dir), oldest first (temp folders start with a dot
    and are ignored)."""
    return checkpoints.list_checkpoints(run_dir, _is_checkpoint)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of the run in `run_dir`, None when it has none yet."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name[len(PREFIX) :])


def find_checkpoint(resume: str, output_dir: str | Path) -> Path | None:
    """The checkpoint `--resume` names: "latest" (None when the run has none yet), a run folder, or a checkpoint.

    Raises:
        FileNotFoundError: a path that is neither a checkpoint nor a run folder with checkpoints.
    """
    if resume == "latest":
        return latest_checkpoint(output_dir)
    path = Path(resume).expanduser()
    if (path / "model").is_dir() and path.name.startswith(PREFIX):
        return path
    found = latest_checkpoint(path)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"--resume {resume}: not a checkpoint folder ({PREFIX}NNNNNNNN with model/ inside) nor a run folder with "
        f"{CHECKPOINTS}/; use --resume latest to continue the run in output_dir"
    )


def config_text(config) -> str:
    """A `TrainConfig` as a run's and a checkpoint's ``train_config.yaml`` hold it."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_checkpoint(run_dir: str | Path, run, keep: int = 2) -> Path:
    """Checkpoint `run` (a `mtu.training.run.Run`) at its step into `run_dir`, atomically; keep only the newest
    `keep` checkpoints.

    Every process must call this (each writes its own RNG states); only the main one renames.
    """
    accelerator = run.accelerator
    temp = checkpoints.temp_folder(run_dir, checkpoint_name(run.progress.step))
    if accelerator.is_main_process:
        checkpoints.clear_leftovers(run_dir)  # temp / old folders of a save or delete that a kill cut short
    accelerator.wait_for_everyone()
    write_state(run, temp)
    accelerator.wait_for_everyone()
    final = temp.with_name(checkpoint_name(run.progress.step))
    if accelerator.is_main_process:
        (temp / CONFIG_FILE).write_text(config_text(run.config))
        final = checkpoints.publish_checkpoint(temp, keep, _is_checkpoint)
    accelerator.wait_for_everyone()
    return final


def write_state(run, folder: Path) -> None:
    """Every process: its RNG states; the main process: weights, optimizer, LR scheduler, progress, EMA."""
    _write_rng(folder / RNG_DIR, run.accelerator.process_index)
    if not run.accelerator.is_main_process:
        return
    save_trained(run.unwrapped, folder / MODEL_DIR, run.config.method, run.adapter)
    tensors, groups = optimizer_to_flat(run.optimizer.state_dict())
    scaler = getattr(run.accelerator, "scaler", None)  # fp16 only
    state = {
        "format": FORMAT,
        "progress": run.progress.state_dict(),
        "lr_scheduler": run.lr_scheduler.state_dict(),
        "optimizer_param_groups": groups,
        "ema": None,
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
    }
    if run.ema is not None:
        ema = run.ema.state_dict()
        tensors |= {f"ema.{index}": shadow for index, shadow in enumerate(ema.pop("shadow"))}
        state["ema"] = ema
    save_tensors(folder / TENSORS_FILE, tensors)
    _write_json(folder / STATE_FILE, state)


def _write_rng(folder: Path, process: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{index}": state for index, state in enumerate(torch.cuda.get_rng_state_all())}
    save_tensors(folder / f"process-{process}.safetensors", tensors)
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = [name, keys.tolist(), int(position), int(has_gauss), float(cached)]
    python_state = [version, list(internal), gauss]
    _write_json(folder / f"process-{process}.json", {"python": python_state, "numpy": numpy_state})


def _write_json(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values, indent=1) + "\n")


def check_loadable(checkpoint: Path) -> None:
    """Refuse a checkpoint without our ``state.json``: an older mtu's pickles, or an incomplete folder.

    Raises:
        ValueError: one line saying why and what to do instead.
    """
    if (checkpoint / STATE_FILE).is_file():
        return
    if any(path.suffix in PICKLE_SUFFIXES for path in checkpoint.iterdir()):
        raise ValueError(
            f"checkpoint {checkpoint} was written by an older mtu in a format that can run code when loaded "
            "(pickle); it is not loaded. Start a new run, or finish this one with the mtu version that wrote "
            "it (only if you trust every file in the folder)"
        )
    raise ValueError(
        f"checkpoint {checkpoint} has no {STATE_FILE}: it is incomplete or not from mtu train. {_earlier(checkpoint)}"
    )


def saved_config(checkpoint: Path) -> dict:
    """The ``train_config.yaml`` of `checkpoint` (plain YAML: `yaml.safe_load` builds no objects)."""
    return _read(checkpoint, CONFIG_FILE, _parse_config)


def _parse_config(path: Path) -> dict:
    saved = yaml.safe_load(path.read_text())
    # A cut-short YAML file often still parses; `logging` is the last section written, so it is then missing.
    if not isinstance(saved, dict):
        raise ValueError(f"a training config is a mapping, got {type(saved).__name__}")
    missing = [key for key in ("model", "tasks", "method", "train", "logging") if key not in saved]
    if missing:
        raise ValueError(f"not a whole training config (missing {missing})")
    return saved


def load_checkpoint(checkpoint: Path, run) -> None:
    """Restore `run` (a `mtu.training.run.Run`) from `checkpoint`, reading only safetensors / JSON files.

    Pickle files in the folder are never opened (planted ones are only reported).

    Raises:
        ValueError: an older pickle checkpoint, or a file that is missing, cut short or does not fit.
    """
    check_loadable(checkpoint)
    ignored = sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if ignored and run.accelerator.is_main_process:
        logger.warning("%s holds files mtu train does not write; they are not loaded: %s", checkpoint, ignored)
    state = _read(checkpoint, STATE_FILE, lambda path: json.loads(path.read_text()))
    found = state.get("format") if isinstance(state, dict) else None
    if found != FORMAT:
        raise ValueError(
            f"checkpoint {checkpoint}: {STATE_FILE} has format {found!r}, this mtu "
            f"reads {FORMAT!r}. {_earlier(checkpoint)}"
        )
    tensors = _read(checkpoint, TENSORS_FILE, load_file)
    # load_weights' own errors would not name the file: check the weights' files first.
    for path in sorted((checkpoint / MODEL_DIR).glob("*.safetensors")):
        _read(checkpoint, path.relative_to(checkpoint), _open_safetensors)
    try:
        load_weights(run.unwrapped, checkpoint / MODEL_DIR, run.config.method)
        _apply_state(run, state, tensors)
    except (KeyError, TypeError, IndexError, RuntimeError) as error:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit this run or is damaged ({_line(error)}). {_earlier(checkpoint)}"
        ) from error
    _load_rng(checkpoint, run.accelerator.process_index)


def _apply_state(run, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    run.optimizer.load_state_dict(optimizer_from_flat(tensors, state["optimizer_param_groups"]))
    run.lr_scheduler.load_state_dict(state["lr_scheduler"])
    run.progress.load_state_dict(state["progress"])
    if run.ema is not None:
        count = sum(key.startswith("ema.") for key in tensors)
        run.ema.load_state_dict({**state["ema"], "shadow": [tensors[f"ema.{index}"] for index in range(count)]})
    scaler = getattr(run.accelerator, "scaler", None)
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])


def _load_rng(checkpoint: Path, process: int) -> None:
    """This process' RNG states; a process the saving run did not have keeps its fresh seeds."""
    stem = Path(RNG_DIR) / f"process-{process}"
    if not (checkpoint / stem.with_suffix(".json")).is_file():
        logger.warning("%s has no RNG states of process %d (fewer processes saved it)", checkpoint, process)
        return
    tensors = _read(checkpoint, stem.with_suffix(".safetensors"), load_file)
    values = _read(checkpoint, stem.with_suffix(".json"), lambda path: json.loads(path.read_text()))
    try:
        torch.set_rng_state(tensors["torch"])
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            if f"cuda.{index}" in tensors:
                torch.cuda.set_rng_state(tensors[f"cuda.{index}"], index)
        version, internal, gauss = values["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = values["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"checkpoint {checkpoint}: the RNG states in {stem}.* are damaged ({_line(error)}). {_earlier(checkpoint)}"
        ) from error


def _read(checkpoint: Path, name: str | Path, parse: Callable[[Path], object]):
    """`parse(checkpoint / name)`, any failure to read or parse reported as one line naming the file."""
    path = checkpoint / name
    try:
        return parse(path)
    except (OSError, ValueError, SafetensorError, yaml.YAMLError) as error:
        raise ValueError(
            f"checkpoint file {path} cannot be read ({_line(error)}); it may have been cut short by a "
            f"crash or a full disk. {_earlier(checkpoint)}"
        ) from error


def _open_safetensors(path: Path) -> None:
    with safe_open(str(path), "pt") as handle:  # checks the header and that the file covers every tensor
        handle.keys()


def _earlier(checkpoint: Path) -> str:
    """Where to resume from instead of `checkpoint`: the newest older checkpoint of its run, if any."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None
    older = [p for p in list_checkpoints(run_dir) if p.name < checkpoint.name] if run_dir else []
    if older:
        return f"Resume from the previous checkpoint instead: --resume {older[-1]}"
    return "No earlier checkpoint of this run is left; start a new run"


def _line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
