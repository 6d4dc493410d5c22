"""Where the metrics' feature networks come from, checked before any work starts.

Nothing is downloaded. Each network is a file or folder the user passes, or one already in the usual
cache: torch hub's checkpoints folder for Inception / AlexNet / VGG (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``), the Hugging Face hub cache for CLIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

# Names the usual downloaders give these files; the hash suffix is part of the name.
INCEPTION_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


class MissingWeightsError(FileNotFoundError):
    """A metric's feature network is not on disk (an OSError, so `mtu` prints it as one line)."""


def torch_checkpoints_dir() -> Path:
    """torch hub's checkpoints folder, where `torch.hub.load_state_dict_from_url` caches downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pth/.pt/.bin file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict (parameter name -> tensor)")
    return state


def find_inception(path: str | Path | None = None) -> Path:
    """The FID Inception weight file: `path`, or one of `INCEPTION_FILES` in torch hub's checkpoints."""
    if path is not None:
        return _existing_file(path, "FID needs Inception weights", "--inception")
    folder = torch_checkpoints_dir()
    for name in INCEPTION_FILES:
        if (folder / name).is_file():
            return folder / name
    raise MissingWeightsError(
        f"FID needs Inception weights: place {INCEPTION_FILES[0]} (pytorch-fid's release file; torch-fidelity's "
        f"{INCEPTION_FILES[1]} also works) in {folder}/ or pass --inception PATH"
    )


def find_lpips(path: str | Path | None = None, net: str = "alex") -> Path:
    """The LPIPS backbone file: `path`, or torchvision's ImageNet AlexNet/VGG16 file in torch hub's checkpoints."""
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; valid options: {list(LPIPS_BACKBONE_FILES)}")
    if path is not None:
        return _existing_file(path, "LPIPS needs backbone weights", "--lpips")
    file = torch_checkpoints_dir() / LPIPS_BACKBONE_FILES[net]
    if file.is_file():
        return file
    raise MissingWeightsError(
        f"LPIPS needs {net} backbone weights: place {LPIPS_BACKBONE_FILES[net]} (torchvision's ImageNet weights) "
        f"in {file.parent}/ or pass --lpips PATH"
    )


def find_clip(name_or_path: str | Path | None = None) -> Path:
    """A CLIP model folder: a local folder, or a hub id already in the Hugging Face cache (no download)."""
    name = str(name_or_path or DEFAULT_CLIP)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise MissingWeightsError(
                f"CLIP folder {local} has no config.json: pass a folder saved by CLIPModel.save_pretrained"
            )
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        folder = Path(snapshot_download(name, local_files_only=True))
    except Exception as error:  # hub raises several types for "not cached" and "not a repo id"
        raise MissingWeightsError(
            f"CLIP metrics need CLIP weights: {name} is neither a local folder nor in the Hugging Face cache "
            f"({HF_HUB_CACHE}); place the model there (config.json, model.safetensors, tokenizer and preprocessor "
            f"files) or pass --clip PATH to a folder saved by CLIPModel/CLIPProcessor.save_pretrained"
        ) from error
    if not (folder / "config.json").is_file():
        raise MissingWeightsError(
            f"the cached {name} in {folder} has no config.json: re-download it or pass --clip PATH"
        )
    return folder


def _existing_file(path: str | Path, what: str, flag: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what}: {flag} {path} does not exist")
    return path


@dataclass
class FeatureNetworks:
    """Resolved paths of the networks a set of metrics needs (None where no chosen metric needs one)."""

    inception: Path | None = None
    lpips: Path | None = None
    clip: Path | None = None
