"""The paper's metrics per task, as data: what each needs (inputs, weights) and how it is computed.

| metric | tasks | needs | network |
|---|---|---|---|
| fid | t2i, remove, inpaint | reference images | Inception v3 (FID) |
| clip_score | t2i, inpaint | captions | CLIP |
| directional_similarity | edit, remove | input/output captions | CLIP |
| image_similarity | edit | input images | CLIP |
| lpips | sr, remove, inpaint | reference images | AlexNet (or VGG16) + LPIPS linear layers |
| psnr, ssim | sr, remove | reference images | none |

Images travel as uint8 tensors (N, 3, H, W); outputs and references share one size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from mtu.evaluation.paper_metrics.clip import ClipFeatures, clip_score, directional_similarity, image_similarity
from mtu.evaluation.paper_metrics.weights import FeatureNetworks, find_clip, find_inception, find_lpips


@dataclass
class EvalBatch:
    """What a task's metrics read. `references` are what outputs should match or resemble: the real
    image of a caption (t2i), the high-resolution image (sr), the target (remove), the original (inpaint)."""

    outputs: torch.Tensor
    inputs: torch.Tensor | None = None
    references: torch.Tensor | None = None
    captions: Sequence[str] | None = None
    source_captions: Sequence[str] | None = None
    target_captions: Sequence[str] | None = None


@dataclass
class Networks:
    """Loaded feature networks (None where no chosen metric needs one)."""

    inception: nn.Module | None = None
    lpips: nn.Module | None = None
    clip: ClipFeatures | None = None


def fid(real: torch.Tensor, generated: torch.Tensor, network: nn.Module, batch_size: int = 32) -> float:
    """Fréchet distance between the `network` features of two uint8 image sets (torchmetrics' FID).

    Args:
        network: maps uint8 (N, 3, H, W) to (N, d); `FIDInceptionV3` for the standard FID.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(generated) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(real)} real and {len(generated)} generated")
    device = _device(network)
    metric = FrechetInceptionDistance(feature=network, normalize=False).to(device)  # its sums live beside the features
    for images, is_real in ((real, True), (generated, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start : start + batch_size].to(device), real=is_real)
    return float(metric.compute())


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _unit(images: torch.Tensor) -> torch.Tensor:
    # float64: SSIM's variances (E[x^2] - E[x]^2) cancel badly in float32 on flat regions.
    return images.double() / 255.0


def lpips(outputs: torch.Tensor, references: torch.Tensor, network: nn.Module, batch_size: int = 32) -> float:
    """Mean LPIPS distance (lower is better; the paper's tables show it times 100)."""
    device = _device(network)
    distances = [
        network(
            _unit(outputs[s : s + batch_size]).float().to(device),
            _unit(references[s : s + batch_size]).float().to(device),
        )
        for s in range(0, len(outputs), batch_size)
    ]
    return float(torch.cat(distances).mean())


def psnr(outputs: torch.Tensor, references: torch.Tensor) -> float:
    """PSNR per image (data range 1), then averaged: a pooled MSE would hide one bad image among good ones."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    values = peak_signal_noise_ratio(_unit(outputs), _unit(references), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return float(values.mean())


def ssim(outputs: torch.Tensor, references: torch.Tensor) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(_unit(outputs), _unit(references), data_range=1.0))


@dataclass(frozen=True)
class MetricSpec:
    """One metric: the `EvalBatch` fields it reads, the network it needs, and how to compute it."""

    name: str
    needs: tuple[str, ...]
    network: str | None
    compute: Callable[[EvalBatch, Networks], float] = field(repr=False)
    higher_is_better: bool = True


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("fid", ("references",), "inception", lambda b, n: fid(b.references, b.outputs, n.inception), False),
        MetricSpec("clip_score", ("captions",), "clip", lambda b, n: clip_score(n.clip, b.outputs, b.captions)),
        MetricSpec(
            "directional_similarity",
            ("inputs", "source_captions", "target_captions"),
            "clip",
            lambda b, n: directional_similarity(n.clip, b.inputs, b.outputs, b.source_captions, b.target_captions),
        ),
        MetricSpec("image_similarity", ("inputs",), "clip", lambda b, n: image_similarity(n.clip, b.inputs, b.outputs)),
        MetricSpec("lpips", ("references",), "lpips", lambda b, n: lpips(b.outputs, b.references, n.lpips), False),
        MetricSpec("psnr", ("references",), None, lambda b, n: psnr(b.outputs, b.references)),
        MetricSpec("ssim", ("references",), None, lambda b, n: ssim(b.outputs, b.references)),
    )
}

# The paper's metrics per task, in reporting order (a metric whose inputs a dataset lacks is skipped).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "t2i": ("fid", "clip_score"),
    "edit": ("directional_similarity", "image_similarity"),
    "sr": ("lpips", "psnr", "ssim"),
    "remove": ("fid", "lpips", "psnr", "ssim", "directional_similarity"),
    "inpaint": ("fid", "lpips", "clip_score"),
}


def check_metric_names(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid options: {list(METRICS)}")


def find_networks(
    metrics: Sequence[str], inception: str | None = None, lpips_path: str | None = None, clip: str | None = None
) -> FeatureNetworks:
    """Resolve the weight files `metrics` need, raising `MissingWeightsError` (naming the file) when absent.

    Cheap: checks files only, so callers run it before loading models or data.
    """
    check_metric_names(metrics)
    needed = {METRICS[name].network for name in metrics}
    return FeatureNetworks(
        inception=find_inception(inception) if "inception" in needed else None,
        lpips=find_lpips(lpips_path) if "lpips" in needed else None,
        clip=find_clip(clip) if "clip" in needed else None,
    )


def load_networks(paths: FeatureNetworks, device: str | torch.device = "cpu") -> Networks:
    """Load the resolved networks onto `device`."""
    from mtu.evaluation.paper_metrics.inception import load_inception
    from mtu.evaluation.paper_metrics.lpips import load_lpips

    return Networks(
        inception=None if paths.inception is None else load_inception(paths.inception).to(device),
        lpips=None if paths.lpips is None else load_lpips(paths.lpips).to(device),
        clip=None if paths.clip is None else ClipFeatures.from_pretrained(paths.clip, device),
    )


def compute_metrics(metrics: Sequence[str], batch: EvalBatch, networks: Networks) -> dict[str, float]:
    """Compute `metrics` on `batch`; ValueError naming the missing `EvalBatch` field when one is None."""
    check_metric_names(metrics)
    present = {f.name for f in fields(batch) if getattr(batch, f.name) is not None}
    results = {}
    for name in metrics:
        spec = METRICS[name]
        missing = [need for need in spec.needs if need not in present]
        if missing:
            raise ValueError(f"metric {name!r} needs {missing}, which this batch lacks")
        if spec.network is not None and getattr(networks, spec.network) is None:
            raise ValueError(f"metric {name!r} needs the {spec.network} network: load it with load_networks")
        results[name] = spec.compute(batch, networks)
    return results
