"""The FID Inception v3 feature network, without torchvision.

torchmetrics' `FrechetInceptionDistance` gets its default network from torch-fidelity, whose package
imports torchvision (unusable beside the torch this project pins). This module rebuilds the same
network (the TensorFlow 2015-12-05 graph as ported by pytorch-fid / torch-fidelity: average pools that
ignore padding, a max pool in the last block) under the same parameter names, so their weight file
loads as is, and hands it to torchmetrics as a custom feature extractor.

`width_divisor` shrinks every layer's channels (1 = the real network); tests use 16 with random weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299
WIDTH_DIVISORS = (1, 2, 4, 8, 16)


class BasicConv2d(nn.Module):
    """Convolution (no bias) -> batch norm (eps 1e-3, TensorFlow's) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves the zero padding out of the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool: int, d: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64 // d, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48 // d, 1)
        self.branch5x5_2 = BasicConv2d(48 // d, 64 // d, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool, 1)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat(
            [self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double, self.branch_pool(_avg_pool(x))], 1
        )


class InceptionB(nn.Module):
    def __init__(self, c_in: int, d: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384 // d, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, 3, stride=2)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, c7: int, d: int):
        super().__init__()
        wide, tall = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(c_in, 192 // d, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **wide)
        self.branch7x7_3 = BasicConv2d(c7, 192 // d, **tall)
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **tall)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **wide)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **tall)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192 // d, **wide)
        self.branch_pool = BasicConv2d(c_in, 192 // d, 1)

    def forward(self, x):
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int, d: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192 // d, 1)
        self.branch3x3_2 = BasicConv2d(192 // d, 320 // d, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192 // d, 1)
        self.branch7x7x3_2 = BasicConv2d(192 // d, 192 // d, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192 // d, 192 // d, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192 // d, 192 // d, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """The last two blocks; the very last pools with max instead of average (a quirk of the TF graph)."""

    def __init__(self, c_in: int, d: int, max_pool: bool):
        super().__init__()
        wide, tall = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320 // d, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384 // d, 1)
        self.branch3x3_2a = BasicConv2d(384 // d, 384 // d, **wide)
        self.branch3x3_2b = BasicConv2d(384 // d, 384 // d, **tall)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448 // d, 1)
        self.branch3x3dbl_2 = BasicConv2d(448 // d, 384 // d, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384 // d, 384 // d, **wide)
        self.branch3x3dbl_3b = BasicConv2d(384 // d, 384 // d, **tall)
        self.branch_pool = BasicConv2d(c_in, 192 // d, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """uint8 images (N, 3, H, W) -> pool features (N, 2048 // width_divisor), as FID uses them.

    Images are resized to 299x299 (bilinear with antialiasing, torchmetrics' default) and scaled to
    [-1, 1]. The classifier head is not built: FID reads the pooled features before it.
    """

    def __init__(self, width_divisor: int = 1):
        super().__init__()
        if width_divisor not in WIDTH_DIVISORS:
            raise ValueError(f"width_divisor must be one of {WIDTH_DIVISORS}, got {width_divisor}")
        d = width_divisor
        self.num_features = 2048 // d  # read by torchmetrics instead of probing with a dummy image
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32 // d, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32 // d, 32 // d, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32 // d, 64 // d, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64 // d, 80 // d, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80 // d, 192 // d, 3)
        self.Mixed_5b = InceptionA(192 // d, 32 // d, d)
        self.Mixed_5c = InceptionA(256 // d, 64 // d, d)
        self.Mixed_5d = InceptionA(288 // d, 64 // d, d)
        self.Mixed_6a = InceptionB(288 // d, d)
        self.Mixed_6b = InceptionC(768 // d, 128 // d, d)
        self.Mixed_6c = InceptionC(768 // d, 160 // d, d)
        self.Mixed_6d = InceptionC(768 // d, 160 // d, d)
        self.Mixed_6e = InceptionC(768 // d, 192 // d, d)
        self.Mixed_7a = InceptionD(768 // d, d)
        self.Mixed_7b = InceptionE(1280 // d, d, max_pool=False)
        self.Mixed_7c = InceptionE(2048 // d, d, max_pool=True)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FIDInceptionV3:
        return super().train(False)  # batch-norm statistics are part of the metric's definition

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))  # (N, C, 8, 8) -> (N, C)


def load_inception(path: str | Path) -> FIDInceptionV3:
    """Build the network for a weight file (pytorch-fid's or torch-fidelity's .pth, or .safetensors).

    The width is read from the first convolution, so a scaled-down stand-in saved by the tests loads too.
    The classifier head (``fc.*``) is ignored; any other missing or unexpected key is an error.
    """
    from mtu.evaluation.paper_metrics.weights import read_state_dict

    state = {key: value for key, value in read_state_dict(path).items() if not key.startswith("fc.")}
    first = state.get("Conv2d_1a_3x3.conv.weight")
    if first is None or 32 % first.shape[0] or 32 // first.shape[0] not in WIDTH_DIVISORS:
        raise ValueError(
            f"{path} is not an FID Inception v3 state dict (no usable 'Conv2d_1a_3x3.conv.weight'): "
            "expected pytorch-fid's pt_inception-2015-12-05-6726825d.pth or torch-fidelity's "
            "weights-inception-2015-12-05-6726825d.pth"
        )
    network = FIDInceptionV3(width_divisor=32 // first.shape[0])
    missing, unexpected = network.load_state_dict(state, strict=False)
    # Files saved before torch 0.4.1 lack BatchNorm's step counter, which inference never reads.
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the FID Inception v3 layout: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]} ({len(missing)} / {len(unexpected)} in all)"
        )
    return network.eval()
