"""Example sources: the Shapes world, HF `datasets`, JSONL files and image folders.

Every source turns (index or rng) into a `Pair` (`mtu.training.pairs`) of uint8 images at the training
resolution. A sample that cannot be read raises `UnreadableSample`; the batch builder skips it, warns and
counts it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtu.config import BUILTIN_TASKS, TaskSpec
from mtu.training.degradation import low_resolution_input
from mtu.training.pairs import Pair, UnreadableSample, fit, pick_text, to_rgb, upsample
from mtu.training.task_config import SourceConfig, TaskConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ShapesSource:
    """Exact task pairs from the Shapes world, drawn fresh from the sample's rng."""

    def __init__(self, name: str, resolution: int, prompt: bool = True) -> None:
        self.name, self.resolution, self.prompt = name, resolution, prompt
        self.spec = BUILTIN_TASKS[name]  # the world makes the built-in tasks only

    def example(self, index: int, rng: np.random.Generator) -> Pair:
        """Pool entry `index`: the world has no records, so the entry is whatever `rng` draws."""
        return self.draw(rng)

    def draw(self, rng: np.random.Generator, training: bool = True) -> Pair:
        from mtu.data.shapes.tasks import make_example

        example = make_example(self.name, rng, training=training)
        if not self.prompt:
            example = replace(example, prompt="")
        target = fit(example.target, self.resolution)
        if self.spec.conditioning == "none":
            return Pair(self.name, example.prompt, target)
        if self.spec.conditioning == "masked_image":
            mask = np.asarray(Image.fromarray(example.mask).resize((self.resolution,) * 2, Image.Resampling.NEAREST))
            return Pair(self.name, example.prompt, target, image=fit(example.image, self.resolution), mask=mask)
        # A task that scales up (sr): the low-res input goes back up to the output size, as "image" conditioning
        # expects.
        image = (
            upsample(example.image, self.resolution) if self.spec.upscale > 1 else fit(example.image, self.resolution)
        )
        return Pair(self.name, example.prompt, target, image=image)


class RecordSource:
    """Records (dicts of role -> raw value) from a dataset, turned into pairs for one task.

    Subclasses implement `__len__` and `record(index)`.
    """

    root: Path | None = None

    def __init__(self, name: str, spec: TaskSpec, task: TaskConfig, resolution: int) -> None:
        self.name, self.spec, self.resolution, self.prompt = name, spec, resolution, task.prompt
        self.columns = task.columns(name)
        self.scale = task.scale(name) if spec.conditioning == "image" else None
        self.second_order = task.degradation == "second_order"

    def __len__(self) -> int:
        raise NotImplementedError

    def record(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def where(self, index: int) -> str:
        """Where record `index` lives, for the skip warning (a file and line, a row, an image file)."""
        return f"record {index}"

    def draw(self, rng: np.random.Generator) -> Pair:
        return self.example(int(rng.integers(len(self))), rng)

    def example(self, index: int, rng: np.random.Generator) -> Pair:
        """Record `index` as a pair; `rng` draws its random parts (caption choice, degradation, mask).

        UnreadableSample when the record cannot be read, its message led by `where(index)`.
        """
        try:
            return self._pair(index, rng)
        except UnreadableSample as error:
            raise UnreadableSample(f"{self.where(index)}: {error}") from None

    def _pair(self, index: int, rng: np.random.Generator) -> Pair:
        record = self.record(index)
        text = pick_text(record.get("text"), rng) if self.prompt else ""
        target = fit(to_rgb(record.get("target"), self.root), self.resolution)
        if self.spec.conditioning == "none":
            return Pair(self.name, text, target)
        if self.spec.conditioning == "masked_image":
            from mtu.data.shapes.degrade import random_mask

            return Pair(self.name, text, target, image=target, mask=random_mask(rng, self.resolution))
        if self.scale:
            low = low_resolution_input(target, rng, self.scale, self.second_order)
            return Pair(self.name, text, target, image=upsample(low, self.resolution))
        return Pair(self.name, text, target, image=fit(to_rgb(record.get("image"), self.root), self.resolution))

    def _roles(self, row: dict[str, Any]) -> dict[str, Any]:
        return {role: row.get(column) for role, column in self.columns.items()}

    def check_columns(self, available: list[str], where: str) -> None:
        """ValueError when a role this task needs has no column (checked once, at start-up)."""
        needed = ["target"] + (["image"] if self.spec.conditioning == "image" and not self.scale else [])
        missing = {role: self.columns[role] for role in needed if self.columns.get(role) not in available}
        if missing:
            raise ValueError(
                f"{where}: task {self.name!r} needs columns {missing} (role: column) but the data has "
                f"{sorted(available)}; "
                f"set tasks.{self.name}.source.columns"
            )


class HFSource(RecordSource):
    """A `datasets` dataset: a `save_to_disk` folder, a folder of data files, or a hub name."""

    def __init__(self, name: str, spec: TaskSpec, task: TaskConfig, resolution: int) -> None:
        super().__init__(name, spec, task, resolution)
        self.path = task.source.path
        self.dataset = undecoded_images(load_hf(task.source), self.columns.values())
        self.check_columns(list(self.dataset.column_names), f"tasks.{name}.source ({task.source.path})")

    def __len__(self) -> int:
        return len(self.dataset)

    def where(self, index: int) -> str:
        return f"{self.path} row {index}"

    def record(self, index: int) -> dict[str, Any]:
        try:
            row = self.dataset[index]  # other decoded features (not images, see undecoded_images) may raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise UnreadableSample(str(error)) from None
        return self._roles(row)


def undecoded_images(dataset, columns):
    """`dataset` with its image columns left encoded ({"bytes", "path"}): `to_rgb` then decodes them within
    the training limits, so a bomb in one row is one unreadable sample, not an error inside `datasets`."""
    import datasets

    for column in set(columns):
        feature = dataset.features.get(column) if column else None
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def load_hf(source: SourceConfig):
    """`load_from_disk` for a `save_to_disk` folder, else `load_dataset(path, name, split=...)`."""
    import datasets

    path = Path(source.path).expanduser()
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if source.split not in loaded:
                raise ValueError(f"{path} has splits {sorted(loaded)}, not {source.split!r}; set source.split")
            loaded = loaded[source.split]
        return loaded
    return datasets.load_dataset(source.path, source.name, split=source.split)


class JsonlSource(RecordSource):
    """One JSON object per line; image values are paths relative to the file's folder."""

    def __init__(self, name: str, spec: TaskSpec, task: TaskConfig, resolution: int) -> None:
        super().__init__(name, spec, task, resolution)
        self.path = path = Path(task.source.path).expanduser()
        self.root = path.parent
        # Bytes, decoded line by line in `record`: a bad byte makes its line unreadable, not the file. Split
        # on b"\n" only and numbered before blank lines go, so a warning names the line an editor shows.
        numbered = [(number, line.rstrip(b"\r")) for number, line in enumerate(path.read_bytes().split(b"\n"), 1)]
        numbered = [(number, line) for number, line in numbered if line.strip()]
        self.line_numbers = [number for number, _ in numbered]
        self.lines = [line for _, line in numbered]
        if not self.lines:
            raise ValueError(f"tasks.{name}.source: {path} has no records")
        keys: set[str] = set()
        for index in range(min(20, len(self.lines))):  # the first readable objects name the columns
            try:
                keys |= set(self._row(index))
            except UnreadableSample:
                continue
        self.check_columns(sorted(keys), f"tasks.{name}.source ({path})")

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, index: int) -> str:
        return f"{self.path} line {self.line_numbers[index]}"

    def record(self, index: int) -> dict[str, Any]:
        return self._roles(self._row(index))

    def _row(self, index: int) -> dict[str, Any]:
        try:
            row = json.loads(self.lines[index].decode("utf-8-sig"))  # -sig: a BOM leading the file is no error
        except UnicodeDecodeError as error:
            raise UnreadableSample(f"not UTF-8 text ({error})") from None
        except (ValueError, RecursionError) as error:  # bad JSON, a 5000-digit number, nesting too deep
            raise UnreadableSample(f"not valid JSON ({error})") from None
        if not isinstance(row, dict):
            raise UnreadableSample(f"expected a JSON object, got {type(row).__name__}")
        return row


class FolderSource(RecordSource):
    """Every image under a folder (recursively); the caption of a.png is a.txt when it exists."""

    def __init__(self, name: str, spec: TaskSpec, task: TaskConfig, resolution: int) -> None:
        super().__init__(name, spec, task, resolution)
        self.root = Path(task.source.path).expanduser()
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"tasks.{name}.source: no images ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def where(self, index: int) -> str:
        return str(self.files[index])

    def record(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        caption = path.with_suffix(".txt")
        if not caption.is_file():
            return {"target": path, "text": ""}
        try:
            text = caption.read_bytes().decode("utf-8-sig").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UnreadableSample(f"caption {caption}: {error}") from None
        return {"target": path, "text": text}


POOL_SPAWN_KEY = 0x9001_CAC4  # pool entries never share a generator with training draws or held-out sets


def pool_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The generator of pool entry `index` of `task` (the task named by a stable hash, so user tasks work)."""
    key = (POOL_SPAWN_KEY, zlib.crc32(task.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class ExamplePool:
    """A fixed set of examples of one task, drawn uniformly: a dataset of `size` entries.

    Entry k is a pure function of (seed, task, k) (`pool_rng`), so every run with the same pool settings
    trains on the same examples and a latent cache of them (`mtu.training.cache`) can stand in for it.
    Shapes pools are `size` draws of the world; a dataset's pool is its records (k = record k, `size` ignored).
    """

    def __init__(self, source: ShapesSource | RecordSource, size: int | None, seed: int) -> None:
        self.source, self.seed, self.name = source, seed, source.name
        self.size = len(source) if isinstance(source, RecordSource) else size
        if not self.size:
            raise ValueError(f"task {self.name!r}: a pool needs a size (data.pool_size)")

    def __len__(self) -> int:
        return self.size

    def example(self, index: int) -> Pair:
        return self.source.example(index, pool_rng(self.seed, self.name, index))

    def draw(self, rng: np.random.Generator) -> Pair:
        return self.example(int(rng.integers(self.size)))


def open_source(name: str, task: TaskConfig, resolution: int) -> ShapesSource | RecordSource:
    """The source of one task, opened (datasets loaded, files listed, columns checked)."""
    spec, kind = task.spec(name), task.source.type
    if kind == "shapes":
        return ShapesSource(name, resolution, task.prompt)
    if kind == "hf":
        return HFSource(name, spec, task, resolution)
    if kind == "jsonl":
        return JsonlSource(name, spec, task, resolution)
    if kind == "folder":
        return FolderSource(name, spec, task, resolution)
    raise ValueError(f"tasks.{name}.source.type: {kind!r} is not one of ['shapes', 'hf', 'jsonl', 'folder']")
