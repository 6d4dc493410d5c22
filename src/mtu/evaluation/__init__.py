"""Evaluation: analytic Shapes metrics and benchmark runners.

Importing this package stays light; the runners in `shapes_eval` import torch and diffusers.
"""

from mtu.evaluation.shapes_metrics import pair_metrics, t2i_accuracy

__all__ = ["pair_metrics", "t2i_accuracy"]
