"""LPIPS (Zhang et al. 2018) without torchvision.

torchmetrics' LPIPS builds its AlexNet/VGG16 backbone with torchvision (unusable here). This module
rebuilds those backbones' ``features`` stacks under torchvision's parameter names, so torchvision's
ImageNet weight files load as they are, and computes LPIPS as torchmetrics does: scale the [-1, 1]
input, unit-normalise each tapped activation over channels, weight the squared differences with the
learned 1x1 "linear" layers, average over space, sum over taps.

The linear layers' weights ship inside torchmetrics (``torchmetrics/functional/image/lpips_models/``,
the official LPIPS v0.1 weights), unless the backbone file carries its own ``lin{k}.model.1.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtu.evaluation.paper_metrics.weights import MissingWeightsError, read_state_dict

MIN_SIDE = 64
# torchvision `features` layouts: ("conv", stride, padding), ("relu",), ("pool", kernel, stride);
# taps are the indices whose outputs LPIPS compares (the ReLU after each stage).
_ALEX = [
    ("conv", 4, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 1, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 1, 1),
    ("relu",),
    ("conv", 1, 1),
    ("relu",),
    ("conv", 1, 1),
    ("relu",),
]


def _vgg16_layout() -> list[tuple]:
    layout: list[tuple] = []
    for stage, convs in enumerate((2, 2, 3, 3, 3)):
        layout += [("conv", 1, 1), ("relu",)] * convs
        if stage < 4:
            layout.append(("pool", 2, 2))
    return layout


LAYOUTS = {"alex": (_ALEX, (1, 4, 7, 9, 11)), "vgg": (_vgg16_layout(), (3, 8, 15, 22, 29))}
# ImageNet-statistics shift/scale of the LPIPS paper, for inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class TappedFeatures(nn.Module):
    """A torchvision-style ``features`` stack that returns the activations at `taps`."""

    def __init__(self, net: str, conv_shapes: Sequence[torch.Size]):
        super().__init__()
        layout, self.taps = LAYOUTS[net]
        shapes = iter(conv_shapes)
        layers: list[nn.Module] = []
        for spec in layout:
            if spec[0] == "conv":
                out_channels, in_channels, kernel, _ = next(shapes)
                layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride=spec[1], padding=spec[2]))
            elif spec[0] == "relu":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.MaxPool2d(spec[1], stride=spec[2]))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class LPIPS(nn.Module):
    """Learned perceptual distance between image batches in [0, 1]; lower is more similar.

    Args:
        backbone: returns a list of activations (N, C_k, h_k, w_k) for a (N, 3, H, W) input.
        linear_weights: one (1, C_k, 1, 1) weight per activation.
    """

    def __init__(self, backbone: nn.Module, linear_weights: Sequence[torch.Tensor]):
        super().__init__()
        self.backbone = backbone
        self.linear = nn.ParameterList(
            [nn.Parameter(weight.detach().clone().float(), requires_grad=False) for weight in linear_weights]
        )
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (2 * images - 1 - self.shift) / self.scale
        side = min(x.shape[-2:])
        if side < MIN_SIDE:
            # AlexNet's stride-4 stem and two pools leave nothing of a 16-pixel image: upsample small ones.
            x = F.interpolate(x, scale_factor=MIN_SIDE / side, mode="bilinear", align_corners=False)
        return [feature / torch.sqrt(1e-8 + feature.square().sum(1, keepdim=True)) for feature in self.backbone(x)]

    @torch.no_grad()
    def forward(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Per-image distances (N,) between float images (N, 3, H, W) in [0, 1]."""
        if images.shape != references.shape or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected two (N, 3, H, W) batches of one shape, "
                f"got {tuple(images.shape)} and {tuple(references.shape)}"
            )
        first, second = self._features(images.float()), self._features(references.float())
        if len(first) != len(self.linear):
            raise ValueError(
                f"the backbone gives {len(first)} activations but there are {len(self.linear)} linear layers"
            )
        total = torch.zeros(images.shape[0], device=images.device)
        for a, b, weight in zip(first, second, self.linear):
            total += F.conv2d((a - b).square(), weight).mean(dim=(1, 2, 3))
        return total


def shipped_linear_weights(net: str) -> Path:
    """torchmetrics' copy of the official LPIPS v0.1 linear-layer weights for `net`."""
    import torchmetrics.functional.image as image_metrics

    path = Path(image_metrics.__file__).parent / "lpips_models" / f"{net}.pth"
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS needs its linear-layer weights {net}.pth: expected at {path} (ships with torchmetrics)"
        )
    return path


def load_lpips(path: str | Path, linear_path: str | Path | None = None) -> LPIPS:
    """LPIPS with the backbone in `path` (torchvision AlexNet or VGG16 state dict; the net is read from it).

    Args:
        path: ``features.{i}.weight/bias`` keys (others such as ``classifier.*`` are ignored), and
            optionally ``lin{k}.model.1.weight`` linear layers.
        linear_path: linear-layer weights; default: those in `path`, else torchmetrics' shipped file.
    """
    state = read_state_dict(path)
    convs = sorted(
        (int(key.split(".")[1]), key) for key in state if key.startswith("features.") and key.endswith(".weight")
    )
    net = {5: "alex", 13: "vgg"}.get(len(convs))
    if net is None:
        raise ValueError(
            f"{path} has {len(convs)} 'features.*' convolutions; expected torchvision's AlexNet (5, "
            "alexnet-owt-7be5be79.pth) or VGG16 (13, vgg16-397923af.pth)"
        )
    backbone = TappedFeatures(net, [state[key].shape for _, key in convs])
    backbone.load_state_dict({key: value for key, value in state.items() if key.startswith("features.")})
    linear_state = read_state_dict(linear_path) if linear_path is not None else state
    if not any(key.startswith("lin") for key in linear_state):
        linear_state = read_state_dict(shipped_linear_weights(net))
    try:
        weights = [linear_state[f"lin{k}.model.1.weight"] for k in range(len(backbone.taps))]
    except KeyError as error:
        raise ValueError(f"LPIPS linear weights lack {error.args[0]!r} (expected lin0..lin4.model.1.weight)") from None
    return LPIPS(backbone, weights)
