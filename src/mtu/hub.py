"""Models named by a Hugging Face Hub id ("org/name"): found in huggingface_hub's cache, downloaded when allowed.

`mtu.assets.resolve_model_path` (the one resolution of a model reference) calls `hub_folder` for a reference
that is neither a shipped name nor a local folder. A snapshot already in the cache is used as it is, so
`HF_HUB_OFFLINE=1` with a filled cache works (`hf download org/name` fills or updates it); otherwise the
repository's marker files are fetched first, then a base pipeline is downloaded the way diffusers does it
(`DiffusionPipeline.download`: the files its components load) and an MTU folder whole (its top-level files).
`HF_HUB_CACHE` and `HF_HUB_OFFLINE` are read on every call, not only when huggingface_hub is imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# A string that can only be a hub repository id ("org/name"), not a shipped name.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# What says which kind of model a repository holds (`mtu.loading.inspect_model`).
MARKERS = ["model_index.json", "mtu_config.json", "training_method.json"]
# An MTU folder or an `mtu train` run's model/: configs, weights and the model card, all at the top level.
MTU_FILES = ["*.json", "*.safetensors", "*.yaml", "*.md"]
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_hub_id(value: str) -> bool:
    """True for "org/name" strings that do not exist locally."""
    return bool(HUB_ID.fullmatch(value)) and not Path(value).expanduser().exists()


def offline() -> bool:
    """Whether downloads are off (`HF_HUB_OFFLINE`, read now)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> str | None:
    """`HF_HUB_CACHE` as set now (None: huggingface_hub's default, from `HF_HOME`)."""
    return os.environ.get("HF_HUB_CACHE") or None


def hub_folder(repo_id: str) -> Path:
    """The local folder of the hub repository `repo_id`: its cached snapshot, else downloaded (unless offline).

    Raises:
        FileNotFoundError: one line saying what was tried (local folder, shipped name, the hub cache, the hub).
    """
    from huggingface_hub import snapshot_download

    tried = f"model {repo_id!r} is not a local folder or a shipped model name, and as a hub id"
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir(), local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repository id
        if offline():
            where = cache_dir() or "the default Hugging Face cache"
            raise FileNotFoundError(
                f"{tried} it is not in {where} while HF_HUB_OFFLINE is set: download it first "
                f"(hf download {repo_id}) or unset HF_HUB_OFFLINE"
            ) from None
    try:
        return _download(repo_id)
    except Exception as error:  # noqa: BLE001 - network, authorisation and missing-repository errors alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(f"{tried} it could not be downloaded: {first}") from None


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    markers = Path(snapshot_download(repo_id, cache_dir=cache_dir(), allow_patterns=MARKERS))
    if (markers / "model_index.json").is_file() and not (markers / "mtu_config.json").is_file():
        from diffusers import DiffusionPipeline

        return Path(DiffusionPipeline.download(repo_id, cache_dir=cache_dir()))
    return Path(snapshot_download(repo_id, cache_dir=cache_dir(), allow_patterns=MTU_FILES))
