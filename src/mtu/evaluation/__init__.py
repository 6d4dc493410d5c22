"""Evaluation: analytic Shapes metrics, the paper's metrics on user data, and the paper's analyses.

- `shapes_metrics` / `shapes_eval`: the built-in Shapes benchmark (`mtu eval --benchmark shapes`).
- `paper_metrics`: FID, CLIP score, CLIP directional similarity, LPIPS, PSNR, SSIM from local weights.
- `user_eval`: an MTU model on a user's JSONL dataset (`mtu eval --benchmark folder`).
- `analysis`: deviation ranks (the paper's Fig. 2) and router specialisation (Fig. 5).
- `router_health`: per-layer across-task JS, dead and saturated routers (is the model still routing by task?).

Importing this package stays light; the names below from the other modules load on first use.
"""

from mtu.evaluation.shapes_metrics import pair_metrics, t2i_accuracy
from mtu.utils.lazy import lazy_exports

_LAZY = {
    "evaluate_folder": "mtu.evaluation.user_eval",
    "deviation_analysis": "mtu.evaluation.analysis",
    "router_analysis": "mtu.evaluation.analysis",
    "router_health": "mtu.evaluation.router_health",
}

__all__ = ["pair_metrics", "t2i_accuracy", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
