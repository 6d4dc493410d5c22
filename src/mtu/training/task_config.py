"""One task of a training run: where its examples come from and how they are turned into pairs.

tasks:
  edit: {weight: 2.0, source: {type: jsonl, path: data/edits.jsonl}}
  sr2: {conditioning: image, sr_scale: 2, source: {type: folder, path: photos/}}
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from mtu.config import BUILTIN_TASKS, CONDITIONINGS, TaskSpec, task_name
from mtu.hub import is_hub_id
from mtu.training.checks import choice, is_int, is_number, need

SOURCE_TYPES = ("shapes", "hf", "jsonl", "folder")
DEGRADATIONS = ("first_order", "second_order")
ROLES = ("image", "text", "target")
# Column names of the paper's datasets (override with `source.columns`): per conditioning, "degraded" for
# a task whose input image is made from the target (`TaskConfig.scale`), and per built-in task whose
# dataset names them otherwise (`TASK_COLUMNS`).
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "none": {"target": "image", "text": "caption"},  # COCO captions
    "image": {"image": "input_image", "text": "edit_prompt", "target": "edited_image"},  # InstructPix2Pix
    "degraded": {"target": "image", "text": "caption"},  # any high-res images; the low-res input is made on the fly
    "masked_image": {"target": "image", "text": "caption"},  # images + generated masks
}
TASK_COLUMNS: dict[str, dict[str, str]] = {
    "remove": {"image": "source_image", "text": "instruction", "target": "target_image"},  # GQA-Inpaint
}


@dataclass
class SourceConfig:
    """Where a task's examples come from.

    Args:
        type: "shapes" (procedural, exact pairs, generated per step), "hf" (a `datasets` hub name, a
            `save_to_disk` folder, or a folder of data files), "jsonl" (one JSON object per line; image
            columns are paths relative to the file), "folder" (images, captions in same-name .txt files).
        path: hub name, folder or file; unused for "shapes".
        name: the `datasets` configuration name ("hf" only).
        split: the split to read ("hf" only).
        columns: role -> column name, roles "image" (conditioning image), "text", "target"; missing roles
            take the paper's dataset's names (`DEFAULT_COLUMNS`).
    """

    type: str = "shapes"
    path: str | None = None
    name: str | None = None
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)

    def problems(self, where: str) -> list[str]:
        found: list[str] = []
        choice(found, f"{where}.type", self.type, SOURCE_TYPES)
        if found:
            return found
        if self.type == "shapes":
            need(found, self.path is None, f"{where}.path: a shapes source has no path (got {self.path!r})")
        elif not isinstance(self.path, str) or not self.path:
            found.append(f"{where}.path: a {self.type} source needs a path")
        elif not Path(self.path).expanduser().exists() and not (self.type == "hf" and is_hub_id(self.path)):
            kind = "file" if self.type == "jsonl" else "folder or hub dataset name" if self.type == "hf" else "folder"
            found.append(f"{where}.path: no such {kind}: {self.path}")
        if not isinstance(self.columns, dict):
            found.append(f"{where}.columns: expected a mapping role -> column, got {self.columns!r}")
        else:
            unknown = sorted(set(self.columns) - set(ROLES))
            need(found, not unknown, f"{where}.columns: unknown roles {unknown}; roles are {list(ROLES)}")
        return found


@dataclass
class TaskConfig:
    """One task of the run.

    Args:
        weight: relative sampling weight (normalised over the tasks).
        source: where its examples come from.
        conditioning: for tasks that are not built in: "none", "image" or "masked_image".
        description: one line for humans (user tasks).
        sr_scale: image tasks: make the conditioning image by degrading the target by this factor
            (Real-ESRGAN style) and resizing it back up; by default the task's `TaskSpec.upscale` when it
            scales up (sr: 4), unset otherwise. A task that is not built in then scales up by it.
        degradation: "second_order" (two degradation rounds, the second milder; Real-ESRGAN) or
            "first_order", for `sr_scale` on real images. Shapes sr uses the world's own first-order chain.
        prompt: false trains the task with empty prompts (the paper's SR data has no captions; a Shapes
            caption names the whole scene, so with it sr could be answered without reading the image).
    """

    weight: float = 1.0
    source: SourceConfig = field(default_factory=SourceConfig)
    conditioning: str | None = None
    description: str = ""
    sr_scale: int | None = None
    degradation: str = "second_order"
    prompt: bool = True

    def spec(self, name: str) -> TaskSpec:
        if name in BUILTIN_TASKS and self.conditioning is None:
            return BUILTIN_TASKS[name]
        conditioning = self.conditioning or "none"
        upscale = self.sr_scale if conditioning == "image" and is_int(self.sr_scale) and self.sr_scale > 1 else 1
        return TaskSpec(name, conditioning, description=self.description, upscale=upscale)

    def scale(self, name: str) -> int | None:
        """The degradation factor that makes this task's input image from the target, or None when its input
        image is read from data."""
        upscale = self.spec(name).upscale
        return self.sr_scale if self.sr_scale is not None else (upscale if upscale > 1 else None)

    def columns(self, name: str) -> dict[str, str]:
        conditioning = self.spec(name).conditioning
        if conditioning == "image" and self.scale(name):
            defaults = DEFAULT_COLUMNS["degraded"]
        else:
            defaults = TASK_COLUMNS.get(name, DEFAULT_COLUMNS[conditioning])
        return {**defaults, **(self.source.columns if isinstance(self.source.columns, dict) else {})}

    def problems(self, name: str) -> list[str]:
        where = f"tasks.{name}"
        found: list[str] = []
        try:
            normal = task_name(name)
        except ValueError as error:
            return [f"{where}: {error}"]
        if normal != name:  # the key names the task everywhere (logs, checkpoints): one spelling only
            return [f"{where}: write the task name as {normal!r}"]
        weight_ok = is_number(self.weight) and self.weight >= 0
        need(found, weight_ok, f"{where}.weight: must be a number >= 0, got {self.weight!r}")
        if name not in BUILTIN_TASKS and self.conditioning is None:
            found.append(
                f"{where}: {name!r} is not a built-in task ({sorted(BUILTIN_TASKS)}); declare its conditioning: "
                "none, image or masked_image"
            )
        if self.conditioning is not None and self.conditioning not in set(CONDITIONINGS) - {"custom"}:
            found.append(
                f"{where}.conditioning: {self.conditioning!r} is not one of ['image', 'masked_image', 'none'] "
                "('custom' channels need your own data code: use the Python API)"
            )
        if self.sr_scale is not None and (not is_int(self.sr_scale) or self.sr_scale < 2):
            found.append(f"{where}.sr_scale: must be an int >= 2, got {self.sr_scale!r}")
        choice(found, f"{where}.degradation", self.degradation, DEGRADATIONS)
        need(found, isinstance(self.prompt, bool), f"{where}.prompt: must be true or false, got {self.prompt!r}")
        found += self.source.problems(f"{where}.source")
        if self.source.type == "hf" and importlib.util.find_spec("datasets") is None:
            found.append(f"{where}.source: type hf needs the `datasets` package (pip install datasets)")
        if not found:
            found += self._source_fits(name, where)
        return found

    def _source_fits(self, name: str, where: str) -> list[str]:
        spec = self.spec(name)
        if self.source.type == "shapes":
            from mtu.data.shapes.tasks import SR_SCALE, TASKS

            if name not in TASKS or spec != BUILTIN_TASKS.get(name):
                return [f"{where}.source: the shapes world only makes the built-in tasks {list(TASKS)}"]
            if self.sr_scale not in (None, SR_SCALE):
                return [f"{where}.sr_scale: shapes sr pairs are x{SR_SCALE}; got {self.sr_scale}"]
            return []
        if spec.conditioning == "image" and not self.scale(name) and self.source.type == "folder":
            return [
                f"{where}.source: a folder of images has no conditioning image for {name!r}; use jsonl / hf, or set "
                "sr_scale"
            ]
        return []
