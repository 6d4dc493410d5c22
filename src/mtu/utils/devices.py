"""Where and in what precision a model runs: the `--device` / `--dtype` of generate, serve, eval and export.

    mtu generate --task t2i --prompt "a red circle" --device cuda --dtype float16
    pipe = MTUPipeline.from_pretrained("shapes-mtu", torch_dtype=torch.bfloat16).to("cuda")   # the same in Python

A combination this PyTorch cannot run (a precision without a kernel on that device) is refused in one line
before any model loads: `check_placement` runs each kind of operation the denoiser and VAE use once, on a
few numbers. The imports at the top are the standard library only (the command line parses without torch).
"""

from __future__ import annotations

import argparse

DTYPES = ("float32", "bfloat16", "float16")


def add_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """Add `--dtype` (and `--device` unless the command has one) to a sub-command's parser."""
    if device:
        parser.add_argument(
            "--device", default=None, help="torch device: cpu, cuda, cuda:1, mps (default: cuda when available)"
        )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="precision of the weights and activations (default float32; bfloat16 on CPU or GPU, float16 on GPU)",
    )


def resolve_device(device: str | None) -> str:
    """`device`, or "cuda" when there is a GPU, else "cpu"."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str | None):
    """The torch dtype named `name` ("bfloat16"), None for None."""
    if name is None:
        return None
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r} is not one of {list(DTYPES)}")
    import torch

    return getattr(torch, name)


def check_placement(device: str | None, dtype: str | None) -> None:
    """Refuse, in one line, a precision that this PyTorch cannot run on `device` (e.g. float16 where an
    operation of the denoiser has no kernel for it)."""
    if dtype in (None, "float32"):
        return
    import torch
    import torch.nn.functional as F

    device = resolve_device(device)
    x = torch.ones(1, 4, 4, 4, device=device, dtype=torch_dtype(dtype))
    probes = {  # one of each operation kind the UNet, the text encoder and the VAE run
        "conv2d": lambda: F.conv2d(x, x[:, :, :3, :3]),
        "group_norm": lambda: F.group_norm(x, 2),
        "layer_norm": lambda: F.layer_norm(x, (4,)),
        "linear": lambda: F.linear(x, x[0, 0]),
        "attention": lambda: F.scaled_dot_product_attention(x, x, x),
        "silu / gelu": lambda: F.gelu(F.silu(x)),
        "interpolate": lambda: F.interpolate(x, scale_factor=2.0, mode="nearest"),
    }
    for name, probe in probes.items():
        try:
            probe()
        except RuntimeError as error:
            reason = str(error).splitlines()[0]
            raise ValueError(
                f"--dtype {dtype} on {device}: PyTorch {torch.__version__} has no {name} kernel for it here "
                f"({reason}); use --dtype float32{' or bfloat16' if dtype == 'float16' else ''}"
            ) from None


def refuse_for_onnx(
    args: argparse.Namespace, what: str, why: str = "onnxruntime runs it in float32 on the CPU"
) -> None:
    """ONNX models run in onnxruntime in float32 on the CPU: `--device` / `--dtype` do not apply to them."""
    given = [flag for flag in ("device", "dtype") if getattr(args, flag, None) is not None]
    if given:
        flags = " and ".join(f"--{flag}" for flag in given)
        raise ValueError(f"{flags}: not for {what} ({why}); leave them out")


# OpenVINO's INFERENCE_PRECISION_HINT for each --dtype: f32 unless asked, since on a CPU with bfloat16 its
# default is bfloat16 (mtu.deploy.openvino_pipeline).
OPENVINO_PRECISIONS = {None: "f32", "float32": "f32", "bfloat16": "bf16"}


def openvino_precision(args: argparse.Namespace, what: str) -> str:
    """The OpenVINO precision of `--dtype` (default f32); `--device` and float16 are refused in one line."""
    if getattr(args, "device", None) is not None:
        raise ValueError(
            f"--device: not for {what} (it runs on OpenVINO's CPU device; in Python, "
            "OpenVINOPipeline.from_openvino(folder, device=...)); leave it out"
        )
    if args.dtype not in OPENVINO_PRECISIONS:
        raise ValueError(f"--dtype {args.dtype}: not for {what} (OpenVINO runs float32 or bfloat16); use one of those")
    return OPENVINO_PRECISIONS[args.dtype]


def load_pipeline(model, base=None, device: str | None = None, dtype: str | None = None):
    """`MTUPipeline.from_pretrained(model, base=base)` in `dtype` on `device` (default: cuda when available),
    after `check_placement`: what generate, serve, eval and export load."""
    check_placement(device, dtype)
    from mtu.pipelines import MTUPipeline

    precision = {} if dtype is None else {"torch_dtype": torch_dtype(dtype)}
    return MTUPipeline.from_pretrained(model, base=base, **precision).to(resolve_device(device))
