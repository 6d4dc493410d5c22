"""Example sources: the Shapes world, HF `datasets`, JSONL files and image folders.

Every source turns (index or rng) into a `Pair` of uint8 images at the training resolution. A sample
that cannot be read raises `UnreadableSample`; the batch builder skips it, warns and counts it.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mtu.config import BUILTIN_TASKS, TaskSpec
from mtu.limits import check_image_size, check_text, training_max_side
from mtu.training.degradation import low_resolution_input
from mtu.training.task_config import SourceConfig, TaskConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class UnreadableSample(Exception):
    """A record whose image or text cannot be decoded (skipped, not fatal)."""


@dataclass
class Pair:
    """One training example before collation.

    Attributes:
        task: task name.
        text: prompt or instruction ("" for none).
        target: uint8 (H, W, 3): the image the model learns to produce.
        image: uint8 (H, W, 3) conditioning image at the target size, for "image" / "masked_image" tasks.
        mask: uint8 (H, W), 1 = region to fill, for "masked_image" tasks.
    """

    task: str
    text: str
    target: np.ndarray
    image: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def droppable_image(self) -> bool:
        """Conditioning dropout may drop the image: "image" layouts only (inpainting keeps its masked image)."""
        return self.image is not None and self.mask is None


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.tensor(image).permute(2, 0, 1).float() / 127.5 - 1


def stack_pairs(pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """{"target", "image": (B, 3, H, W) in [-1, 1], "mask": (B, 1, H, W)}; missing images / masks are zeros."""
    targets = torch.stack([to_tensor(pair.target) for pair in pairs])
    zeros, no_mask = torch.zeros_like(targets[0]), torch.zeros(1, *targets.shape[2:])
    images = torch.stack([to_tensor(pair.image) if pair.image is not None else zeros for pair in pairs])
    masks = [torch.tensor(pair.mask, dtype=torch.float32)[None] if pair.mask is not None else no_mask for pair in pairs]
    return {"target": targets, "image": images, "mask": torch.stack(masks)}


def fit(image: np.ndarray, resolution: int) -> np.ndarray:
    """Resize the short side to `resolution` (bicubic) and centre-crop a square; no-op at the right size."""
    height, width = image.shape[:2]
    if height == width == resolution:
        return image
    scale = resolution / min(height, width)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    top, left = (resized.shape[0] - resolution) // 2, (resized.shape[1] - resolution) // 2
    return resized[top : top + resolution, left : left + resolution]


def to_rgb(value: Any, root: Path | None = None) -> np.ndarray:
    """uint8 (H, W, 3) from a PIL image, an array, encoded bytes, a `datasets` image dict or a file path.

    Files and bytes are read by `mtu.images.open_image` within `training_max_side()`: a decompression bomb,
    a missing, truncated or garbage file is an `UnreadableSample` naming the file, never the end of the run.
    """
    if isinstance(value, dict):  # datasets Image feature with decode=False: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return _decode(io.BytesIO(value), "image bytes")
    if isinstance(value, (str, Path)):
        path = Path(value)
        path = path if path.is_absolute() or root is None else root / path
        return _decode(path, f"image {path}")
    if isinstance(value, Image.Image):
        return _decode(value, "image")
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 3:
        return value.astype(np.uint8)
    raise UnreadableSample(f"expected an image, got {type(value).__name__}")


def _decode(source: Any, what: str) -> np.ndarray:
    from mtu.images import open_image
    from mtu.images import to_rgb as convert

    limit = training_max_side()
    try:
        if isinstance(source, Image.Image):  # already decoded (by the caller): only its size is left to check
            check_image_size(*source.size, what=what, limit=limit)
            return np.asarray(convert(source))
        return np.asarray(open_image(source, what, max_side=limit))
    except Exception as error:  # noqa: BLE001
        # PIL's decoders raise many types on malformed files (struct.error, IndexError, EOFError, ...), and
        # open_image ValueErrors naming the file: either way it is this record that is bad, not the run.
        message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        raise UnreadableSample(message if what in message else f"cannot read {what}: {message}") from None


def pick_text(value: Any, rng: np.random.Generator) -> str:
    """A caption from a string, or one at random from a list (COCO has five per image); None -> ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        value = value[int(rng.integers(len(value)))]
    if not isinstance(value, str):
        raise UnreadableSample(f"expected text, got {type(value).__name__}")
    try:  # a JSON "\udcff" escape decodes to a lone surrogate, which the tokenizer cannot take
        return check_text(value, "text")
    except ValueError as error:
        raise UnreadableSample(str(error)) from None


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


def upsample(image: np.ndarray, resolution: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.Resampling.BICUBIC))


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
