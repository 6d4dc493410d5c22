"""The paper's metrics on real data: FID, CLIP score, CLIP directional similarity, LPIPS, PSNR, SSIM.

Feature networks load from local files only (see `weights`); `inception` and `lpips` rebuild the
torchvision-based networks without torchvision. Importing this package loads torch but no network.
"""

from mtu.evaluation.paper_metrics.clip import ClipFeatures, clip_score, directional_similarity, image_similarity
from mtu.evaluation.paper_metrics.inception import FIDInceptionV3, load_inception
from mtu.evaluation.paper_metrics.lpips import LPIPS, load_lpips
from mtu.evaluation.paper_metrics.metrics import (
    METRICS,
    TASK_METRICS,
    EvalBatch,
    Networks,
    compute_metrics,
    fid,
    find_networks,
    load_networks,
    lpips,
    psnr,
    ssim,
)
from mtu.evaluation.paper_metrics.weights import (
    FeatureNetworks,
    MissingWeightsError,
    find_clip,
    find_inception,
    find_lpips,
)

__all__ = [
    "ClipFeatures",
    "EvalBatch",
    "FIDInceptionV3",
    "FeatureNetworks",
    "LPIPS",
    "METRICS",
    "MissingWeightsError",
    "Networks",
    "TASK_METRICS",
    "clip_score",
    "compute_metrics",
    "directional_similarity",
    "fid",
    "find_clip",
    "find_inception",
    "find_lpips",
    "find_networks",
    "image_similarity",
    "load_inception",
    "load_lpips",
    "load_networks",
    "lpips",
    "psnr",
    "ssim",
]
