"""Writing models and outputs: never over existing work unless asked, whole or not at all, with normal modes.

A trained MTU folder is hours of compute; `mtu upcycle --out` on it used to replace its weights with
untrained ones without a word. Writers check their target with `check_target` first, build the result in
a temp folder next to it, and `replace_folder` swaps it in. Single files go through `write_file_atomic`.
This is the one place that renames things into place: checkpoints, caches and the pretraining recipe use
it too.

This module imports only the standard library (the command line checks targets before loading torch).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

# Files that mark a folder as a model mtu (or diffusers) wrote: only such folders are replaced.
MODEL_MARKERS = ("mtu_config.json", "model_index.json")


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask alone must set it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give a temp file or folder the mode a plain `open` / `mkdir` would have.

    tempfile creates files 0600 and folders 0700 (private to the writer); renamed into place they would
    keep that mode, and a shared model folder would be unreadable to the others who should read it.
    """
    path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())


def check_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """`path` as a Path if a model may be written there: absent, an empty folder, or (with `overwrite`) a model folder.

    Raises:
        FileExistsError: it holds something and `overwrite` is false; or it is not a model folder (a file,
            or a folder without `MODEL_MARKERS`), which even `overwrite` does not delete.
    """
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path
    if not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; --overwrite (overwrite=True) replaces it")
    if not path.is_dir() or not any((path / marker).is_file() for marker in MODEL_MARKERS):
        raise FileExistsError(
            f"{path} is not a model folder (it holds no {' or '.join(MODEL_MARKERS)}), so --overwrite does not "
            "replace it: choose another folder or remove it yourself"
        )
    return path


def write_folder(out: str | os.PathLike, write: Callable[[Path], object], overwrite: bool = False) -> Path:
    """Run `write(temp_folder)` next to `out`, then put the folder at `out`: complete or absent, never half."""
    out = check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        write(temp)
        replace_folder(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out


def write_file_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run `write(temp_file)` next to `path`, then rename it to `path`: readers see the old file or the new one.

    The temp file is a dot name in the same folder (a rename across file systems is not atomic); it is
    deleted when `write` fails, and it gets the mode a plain `open` would give.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        apply_umask(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` so that readers see the old file or the new one, never half of it."""
    return write_file_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def replace_folder(new: Path, out: Path) -> None:
    """Rename the finished folder `new` to `out`, moving an existing `out` aside first and deleting it after.

    Readers can miss `out` only between the two renames, never see it half written. The old folder goes to
    a dot name (``.<name>.replaced-<hex>``), so a kill before its deletion leaves it under no listed name.
    """
    apply_umask(new)
    if not out.exists():
        new.rename(out)
        return
    old = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)  # put the previous folder back: the caller's error says what failed
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    """Delete `folder`, renamed to a dot name first: a kill mid-delete leaves nothing half deleted under its name."""
    doomed = folder.with_name(f".{folder.name}.removed-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed)
