"""Encode once what never trains: the latents and text embeddings of a fixed example pool.

A training step spends ~40% of its time in the frozen VAE and text encoder (BENCHMARKS.md §8), on
examples it has seen before: training draws from a fixed pool (`ExamplePool`), as the paper trains
epochs over fixed datasets. `fill_cache` encodes every pool entry once with `encode_batch`, the same
function an uncached step calls, and stores per task, in one safetensors file:

- the target's VAE *posterior* (mean and std), not a sample: each step still draws its own latent
  ``mean + std * eps`` with the sample's own noise, so the training objective is exactly the uncached
  one (a fixed sample would freeze the VAE's sampling noise per example, as kohya-ss' cache does);
- the task's conditioning channels in denoiser layout (image latent, or mask + masked-image latent);
- the prompt's text embeddings (and SDXL's pooled embedding), plus the empty prompt's, for text dropout.

Random parts of an entry (caption choice, sr degradation, inpainting mask) are drawn once, when the
pool is made; dropout and noise stay per step. A file records what made it (model weights' hash,
resolution, task, source, pool) and is refused when any of it differs. Filling writes parts of
`CHUNK` entries atomically, so a killed fill resumes; the final file appears whole or not at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from mtu.config import TaskSpec
from mtu.layers.router import task_runs
from mtu.training.pairs import UnreadableSample, stack_pairs
from mtu.training.sources import ExamplePool
from mtu.utils.tensor_files import save_tensors

logger = logging.getLogger(__name__)

FORMAT = 1
CHUNK = 256  # entries per part file: a killed fill loses at most this much work
# Version of how record images become pixels, part of a record source's cache identity. 2: `mtu.utils.images`
# (alpha onto white, 16-bit scaled down; before, alpha was dropped and 16-bit clipped), so caches of 1 refill.
RECORD_DECODING = 2


def default_cache_dir() -> Path:
    return Path(os.environ.get("MTU_CACHE_DIR") or Path.home() / ".cache" / "mtu" / "latents")


@dataclass
class CachedExample:
    """One encoded pool entry; what `collate` stacks instead of a `Pair`'s images."""

    task: str
    mean: torch.Tensor  # (C, h, w) target posterior
    std: torch.Tensor
    condition: torch.Tensor | None  # (extra channels, h, w) in denoiser layout, None for "none"
    text: torch.Tensor  # (L, D) prompt embeddings
    pooled: torch.Tensor | None  # SDXL's pooled embedding
    empty: dict[str, torch.Tensor]  # the empty prompt's "text" (and "pooled"), shared by the pool's entries
    droppable_image: bool


class CachedPool:
    """An `ExamplePool` whose entries come from a filled cache: draws the same entries, already encoded."""

    def __init__(self, name: str, spec: TaskSpec, tensors: dict[str, torch.Tensor]) -> None:
        self.name, self.spec, self.tensors = name, spec, tensors
        self.size = len(tensors["valid"])
        self.empty = {key[len("empty_") :]: value for key, value in tensors.items() if key.startswith("empty_")}

    def __len__(self) -> int:
        return self.size

    def draw(self, rng: np.random.Generator) -> CachedExample:
        index = int(rng.integers(self.size))  # as `ExamplePool.draw`: the same entry for the same rng
        if not self.tensors["valid"][index]:
            raise UnreadableSample(f"pool entry {index} was unreadable when the cache was filled")
        t = self.tensors
        condition = t["condition"][index] if "condition" in t else None
        pooled = t["pooled"][index] if "pooled" in t else None
        droppable = self.spec.conditioning == "image"
        return CachedExample(
            self.name, t["mean"][index], t["std"][index], condition, t["text"][index], pooled, self.empty, droppable
        )


@torch.no_grad()
def encode_batch(components, batch: dict, specs: list[TaskSpec]) -> dict[str, torch.Tensor]:
    """What the frozen parts make of a collated batch of images (`mtu.training.data.collate`).

    Returns:
        {"mean", "std": (B, C, h, w) target posterior; "condition": (B, E, h, w) each row's conditioning
        channels in denoiser layout, zero-padded to the widest task E; "text": (B, L, D); "pooled": SDXL's
        (B, P) pooled embeddings, absent otherwise}. A dropped image (`drop_image`) is zeros.
    """
    mean, std = components.posterior(batch["target"])
    channels = [components.extra_channels(spec) for spec in specs]
    condition = torch.zeros(len(mean), max(channels), *mean.shape[2:], device=mean.device)
    for task, rows in task_runs(batch["task_ids"].tolist()):
        if channels[task]:
            images, masks = batch["image"][rows], batch["mask"][rows]
            condition[rows, : channels[task]] = components.condition_latents(specs[task], images, masks)
    keep = (~batch["drop_image"]).to(condition)[:, None, None, None]  # InstructPix2Pix: a dropped image is zeros
    text, pooled = components.encode_text(batch["texts"])
    encoded = {"mean": mean, "std": std, "condition": condition * keep, "text": text.float()}
    return encoded if pooled is None else {**encoded, "pooled": pooled.float()}


def model_fingerprint(components) -> str:
    """A hash of everything in the frozen parts that changes an encoding: weights, dtype, tokenizers."""
    digest = hashlib.sha256()
    for module in [components.vae, *components.text_encoders]:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for tokenizer in components.tokenizers:
        vocab = sorted(tokenizer.get_vocab().items())
        digest.update(json.dumps([vocab, tokenizer.model_max_length]).encode())
    return digest.hexdigest()


def cache_identity(components, weights: str, model: str, name: str, spec: TaskSpec, task_config, pool) -> dict:
    """What a cache file must have been made from to stand in for `pool` (stored in its metadata).

    `weights` is `model_fingerprint(components)` (computed once per run: it reads every frozen weight).
    """
    source = task_config.source
    return {
        "format": FORMAT,
        "model": model,
        "weights": weights,
        "dtype": str(components.dtype),
        "resolution": components.resolution,
        "task": name,
        "conditioning": spec.conditioning,
        "source": {
            "type": source.type,
            "path": source.path,
            "name": source.name,
            "split": source.split,
            "columns": task_config.columns(name),
            "data": _data_fingerprint(pool),
        },
        "sr_scale": task_config.scale(name),
        "degradation": task_config.degradation,
        "prompt": task_config.prompt,
        "pool_size": len(pool),
        "pool_seed": pool.seed,
    }


def _data_fingerprint(pool: ExamplePool) -> str:
    """Records change under a path: hash what a source lists (file names and sizes, or the JSONL bytes), and
    how record images are decoded (`RECORD_DECODING`)."""
    source = pool.source
    if hasattr(source, "lines"):
        listed = hashlib.sha256(b"\n".join(source.lines)).hexdigest()
    elif hasattr(source, "files"):
        listing = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in source.files]
        listed = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    elif hasattr(source, "dataset"):
        listed = str(getattr(source.dataset, "_fingerprint", len(source.dataset)))
    else:
        return "shapes"
    return f"{listed} decoding {RECORD_DECODING}"


def cache_path(cache_dir: str | Path | None, identity: dict) -> Path:
    """<cache_dir>/<model>-<hash of its path>/<task>-<hash of the identity minus weights>.safetensors.

    The weights' hash stays out of the name on purpose: a model retrained in place finds its old cache
    and is told so, instead of silently filling a second one next to it.
    """
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    model = identity["model"]
    model_tag = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(model).name)[:40]}-{_short_hash(model)}"
    keyed = {k: v for k, v in identity.items() if k not in ("weights", "model")}
    return root / model_tag / f"{identity['task']}-{_short_hash(keyed)}.safetensors"


def _short_hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stack_cached(examples: list[CachedExample], drop_text: list[bool], drop_image: list[bool]) -> dict:
    """`encode_batch`'s output for cached examples, with the sampled dropout applied the same way."""
    widest = max((e.condition.shape[0] for e in examples if e.condition is not None), default=0)
    condition = torch.zeros(len(examples), widest, *examples[0].mean.shape[1:])
    for row, (example, dropped) in enumerate(zip(examples, drop_image)):
        if example.condition is not None and not dropped:
            condition[row, : example.condition.shape[0]] = example.condition
    stacked = {
        "mean": torch.stack([e.mean for e in examples]),
        "std": torch.stack([e.std for e in examples]),
        "condition": condition,
        "text": torch.stack([e.empty["text"] if drop else e.text for e, drop in zip(examples, drop_text)]),
    }
    if examples[0].pooled is not None:
        pooled = [e.empty["pooled"] if drop else e.pooled for e, drop in zip(examples, drop_text)]
        stacked["pooled"] = torch.stack(pooled)
    return stacked


def fill(components, pool: ExamplePool, spec: TaskSpec, identity: dict, path: Path) -> None:
    """Encode `pool` into `path` unless it is there. Concurrent fills of one path (e.g. `mtu reproduce
    --jobs 2`) take turns on a lock file: the second finds the first's file and does nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            _fill(components, pool, spec, identity, path)


def load(pool: ExamplePool, spec: TaskSpec, identity: dict, path: Path) -> CachedPool:
    """The cached pool at `path`, refused (ValueError) when it was made from something else or is corrupt."""
    return CachedPool(pool.name, spec, _load(path, identity))


def _load(path: Path, identity: dict) -> dict[str, torch.Tensor]:
    try:
        stored = json.loads(_metadata(path).get("identity", "null"))
        tensors = load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError) as error:
        raise ValueError(f"latent cache {path} is unreadable ({error}); delete it to fill it again") from None
    expected = json.loads(json.dumps(identity, default=str))
    if stored != expected:
        differ = sorted(k for k in set(expected) | set(stored or {}) if (stored or {}).get(k) != expected.get(k))
        raise ValueError(
            f"latent cache {path} was made from a different {', '.join(differ)} than this run "
            f"(e.g. the model's weights changed in place); delete it to fill it again, or set data.cache_dir "
            "to another folder"
        )
    return tensors


def _fill(components, pool: ExamplePool, spec: TaskSpec, identity: dict, path: Path) -> None:
    """Encode the pool in parts of `CHUNK` entries (each written atomically), then join them atomically."""
    parts_dir = path.with_name(f".{path.name}.parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"identity": json.dumps(identity, default=str)}
    starts = range(0, len(pool), CHUNK)
    with tqdm(total=len(pool), desc=f"caching {pool.name} latents", unit="example") as bar:
        for start in starts:
            part = parts_dir / f"part-{start:08d}.safetensors"
            if not _part_ok(part, metadata):  # parts of a killed fill are reused when they match
                tensors = _encode_entries(components, pool, spec, range(start, min(start + CHUNK, len(pool))))
                save_tensors(part, tensors, metadata)
            bar.update(min(CHUNK, len(pool) - start))
    parts = [load_file(str(parts_dir / f"part-{start:08d}.safetensors")) for start in starts]
    joined = {key: torch.cat([p[key] for p in parts]) for key in parts[0] if not key.startswith("empty_")}
    text, pooled = components.encode_text([""])
    joined["empty_text"] = text[0].float().cpu()
    if pooled is not None:
        joined["empty_pooled"] = pooled[0].float().cpu()
    save_tensors(path, joined, metadata)
    shutil.rmtree(parts_dir, ignore_errors=True)


def _part_ok(part: Path, metadata: dict) -> bool:
    if not part.is_file():
        return False
    try:
        return _metadata(part) == metadata
    except (SafetensorError, OSError):
        return False


def _metadata(path: Path) -> dict:
    """A safetensors file's header metadata, without reading its tensors."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def _encode_entries(components, pool: ExamplePool, spec: TaskSpec, indices: range) -> dict[str, torch.Tensor]:
    """Encode pool entries `indices` (unreadable ones stay zeros, with valid = 0), in batches of 64."""
    pairs, valid = {}, torch.zeros(len(indices), dtype=torch.uint8)
    for row, index in enumerate(indices):
        try:
            pairs[row] = pool.example(index)
            valid[row] = 1
        except UnreadableSample as error:  # kept out (valid = 0); training counts it as skipped when drawn
            logger.warning("latent cache of %r: pool entry %d is unreadable (%s)", pool.name, index, error)
    rows = list(pairs)
    if not rows:
        raise ValueError(f"task {pool.name!r}: pool entries {indices.start}-{indices.stop - 1} are all unreadable")
    encoded: dict[str, torch.Tensor] = {}
    for start in range(0, len(rows), 64):
        chunk = [pairs[row] for row in rows[start : start + 64]]
        batch = {
            **stack_pairs(chunk),
            "texts": [p.text for p in chunk],
            "task_ids": torch.zeros(len(chunk), dtype=torch.long),
            "drop_image": torch.zeros(len(chunk), dtype=torch.bool),
        }
        for key, value in encode_batch(components, batch, [spec]).items():
            if key == "condition" and spec.conditioning == "none":
                continue
            out = encoded.setdefault(key, torch.zeros(len(indices), *value.shape[1:]))
            out[rows[start : start + 64]] = value.cpu()
    return {**encoded, "valid": valid}


def training_sources(config, components, sources: dict, accelerator) -> dict:
    """What training draws from: the opened sources, or their pools (`data.pool_size`), or cached pools.

    With `data.cache: latents` the main process fills missing caches first while the others wait; then
    every process loads them.
    """
    data, drawn = config.data, {}
    for name, source in sources.items():
        pooled = data.cache == "latents" or data.pool_size is not None
        drawn[name] = ExamplePool(source, data.pool_size, data.pool_seed) if pooled else source
    if data.cache != "latents":
        return drawn
    specs, weights = dict(zip(config.task_names, config.task_specs())), model_fingerprint(components)
    located = {}
    for name, pool in drawn.items():
        identity = cache_identity(components, weights, config.model, name, specs[name], config.tasks[name], pool)
        located[name] = (cache_path(data.cache_dir, identity), identity)
        if accelerator.is_main_process:
            fill(components, pool, specs[name], identity, located[name][0])
    accelerator.wait_for_everyone()
    return {name: load(drawn[name], specs[name], identity, path) for name, (path, identity) in located.items()}
