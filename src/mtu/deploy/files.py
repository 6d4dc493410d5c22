"""Target checks for single-file outputs; standard library only, so the command line refuses before loading torch."""

from __future__ import annotations

from pathlib import Path


def check_file_target(out: str | Path, overwrite: bool) -> Path:
    """A .safetensors path that may be written: absent, or an existing file with `overwrite`."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: a single-file checkpoint is a .safetensors file (e.g. model-edit.safetensors)")
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; a single-file checkpoint is one .safetensors file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; --overwrite (overwrite=True) replaces it")
    return out
