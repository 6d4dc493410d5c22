"""Writing models and outputs: never over existing work unless asked, whole or not at all, with normal modes.

A trained MTU folder is hours of compute; `mtu upcycle --out` on it used to replace its weights with
untrained ones without a word. Writers check their target with `check_target` first, build the result in
a temp folder next to it, and `replace_folder` swaps it in. Single files go through `write_file_atomic`.
This is the one place that renames things into place: checkpoints, caches and the pretraining recipe use
it too. Every command that writes checks its output against the models it reads with `check_not_source`
(through `check_target` and `mtu.deploy.files.check_file_target`): no output may be, hold or lie inside one.

This module imports only the standard library (the command line checks targets before loading torch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

# Files that mark a folder as a model: mtu_config.json is mtu's own; a model_index.json is mtu's only with a
# key of its own (`mtu_onnx`, `mtu_openvino`, `_mtu_export`: an `mtu export`), else it is any diffusers
# pipeline, perhaps a downloaded one.
MODEL_MARKERS = ("mtu_config.json", "model_index.json")
EXPORT_INDEX_KEY = "_mtu_export"  # the mark of a diffusers export; diffusers skips "_" keys when it loads


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


def output_path(text: str) -> Path:
    """argparse `type` of every --out: an empty string would name the current folder without a word."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path would name the current folder; give the output's path")
    return Path(text)


def check_not_source(
    out: str | os.PathLike, sources: Iterable[str | os.PathLike | None], name: str = "--out", replaced: bool = True
) -> None:
    """Refuse an output that is, holds or lies inside a model (folder or file) the command reads; with
    `replaced` False (a folder files are added to, not one replaced whole), holding a model is fine.

    Writing replaces a folder whole or a file in place, so an output naming its own input would destroy
    the model being read (`--out M --model M --overwrite` replaced a trained folder with an export). Paths
    are compared resolved through symlinks, and existing files by identity (hard links); `--overwrite` does
    not lift this.
    """
    target = Path(os.path.realpath(out))
    for source in sources:
        if source is None or not os.path.exists(source):
            continue
        real = Path(os.path.realpath(source))
        if target == real or real in target.parents or (target.exists() and os.path.samefile(target, real)):
            relation = "lies inside" if real in target.parents else "is"
        elif replaced and target in real.parents:
            relation = "holds"
        else:
            continue
        raise ValueError(
            f"{name} {out} {relation} {source}, which this command reads: mtu never writes into a model it "
            f"reads, even with --overwrite; choose another {name}"
        )


def check_parents(path: Path) -> None:
    """Refuse a path under an existing file (`a.txt/out`), which no writer could make, before any work."""
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise FileExistsError(f"{blocking} is a file, so {path} cannot be made inside it: choose another path")


def is_own_folder(path: Path) -> bool:
    """Whether `path` is a model folder mtu wrote: an MTU folder, or an `mtu export` (ONNX or diffusers)."""
    if (path / MODEL_MARKERS[0]).is_file():
        return True
    try:
        index = json.loads((path / MODEL_MARKERS[1]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and any(str(key).lstrip("_").startswith("mtu_") for key in index)


def check_folder(
    path: str | os.PathLike, sources: Iterable[str | os.PathLike | None] = (), replaced: bool = False
) -> Path:
    """`path` as a Path if it can be an output folder, existing or not: not empty, not a model in `sources`
    (`check_not_source`; holding one is fine unless `replaced`), not a file or under one, not a dangling
    symlink. What is inside is not looked at."""
    if not str(path).strip():
        raise ValueError("the output path is empty (it would name the current folder); give the output's path")
    path = Path(path)
    check_not_source(path, sources, replaced=replaced)
    check_parents(path)
    if path.is_symlink() and not path.exists():
        raise FileExistsError(
            f"{path} is a symlink to {os.readlink(path)}, which does not exist: fix or remove the link"
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, and the output is a folder: choose another path")
    return path


def check_target(
    path: str | os.PathLike, overwrite: bool = False, sources: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """`path` as a Path if a model may be written there: absent, an empty folder, or (with `overwrite`) a
    model folder mtu wrote; never a model in `sources` (`check_not_source`).

    Raises:
        ValueError: `path` is empty, or is, holds or lies inside one of `sources`.
        FileExistsError: it holds something and `overwrite` is false; or it is not a folder mtu wrote (a file,
            a dangling symlink, a folder of other files, a diffusers pipeline mtu did not export), which even
            `overwrite` does not delete.
    """
    path = check_folder(path, sources, replaced=True)
    if not path.exists() or not any(path.iterdir()):
        return path
    if not is_own_folder(path):
        raise FileExistsError(
            f"{path} is not a model folder mtu wrote (no {MODEL_MARKERS[0]}, nor a {MODEL_MARKERS[1]} of an mtu "
            "export), so --overwrite does not replace it: choose another folder or remove it yourself"
        )
    if not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; --overwrite (overwrite=True) replaces it")
    return path


def write_folder(out: str | os.PathLike, write: Callable[[Path], object], overwrite: bool = False) -> Path:
    """Run `write(temp_folder)` next to `out`, then put the folder at `out`: complete or absent, never half."""
    out = check_target(out, overwrite)
    if out.is_symlink():  # replace the folder it points to, next to it (a rename is atomic on one file system)
        out = Path(os.path.realpath(out))
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
    deleted when `write` fails, and it gets the mode a plain `open` would give. Like `open`, it writes
    through a symlink: the file it points to is replaced, the link kept.
    """
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
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
    A symlink `out` is moved aside and unlinked, never followed: what it points to is left as it is.
    """
    apply_umask(new)
    if not os.path.lexists(out):
        new.rename(out)
        return
    old = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        old.rename(out)  # put the previous folder back: the caller's error says what failed
        raise
    if old.is_symlink() or not old.is_dir():
        old.unlink()  # rmtree refuses a symlink: it used to stay behind as a .replaced-* name for ever
    else:
        shutil.rmtree(old, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    """Delete `folder`, renamed to a dot name first: a kill mid-delete leaves nothing half deleted under its name."""
    doomed = folder.with_name(f".{folder.name}.removed-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed)
