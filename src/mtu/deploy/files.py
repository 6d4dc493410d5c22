"""Target checks for single-file outputs; standard library only, so the command line refuses before loading torch."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from mtu.utils.outputs import check_not_source, check_parents

EXPORT_KEY = "mtu_task"  # in the safetensors metadata of every single-file export: the file is mtu's own
MAX_HEADER = 100_000_000  # the safetensors format's own limit on its JSON header


def safetensors_metadata(path: Path) -> dict | None:
    """The `__metadata__` of a safetensors file read from its header alone; None if it is not one."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, struct.error):  # JSON and UTF-8 errors are ValueErrors
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else None


def check_file_target(out: str | Path, overwrite: bool, sources: Iterable[str | os.PathLike | None] = ()) -> Path:
    """A .safetensors path that may be written: absent, or (with `overwrite`) a single-file export mtu wrote;
    never one of `sources`, a model the command reads (`mtu.utils.outputs.check_not_source`)."""
    if not str(out).strip():
        raise ValueError("the output path is empty; give the .safetensors file to write (e.g. model-edit.safetensors)")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: a single-file checkpoint is a .safetensors file (e.g. model-edit.safetensors)")
    check_not_source(out, sources)
    check_parents(out)
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; a single-file checkpoint is one .safetensors file")
    if out.is_symlink() and not out.exists():
        raise FileExistsError(f"{out} is a symlink to {os.readlink(out)}, which does not exist: fix or remove the link")
    if not out.exists():
        return out
    if EXPORT_KEY not in (safetensors_metadata(out) or {}):
        raise FileExistsError(
            f"{out} already exists and is not a single-file export of mtu (no {EXPORT_KEY!r} in its metadata), so "
            "--overwrite does not replace it: choose another --out or remove it yourself"
        )
    if not overwrite:
        raise FileExistsError(f"{out} already exists; --overwrite (overwrite=True) replaces it")
    return out
