"""Models shipped inside the package, addressable by name wherever a model path is accepted."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent

# name -> folder holding a diffusers pipeline (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)
SHIPPED_MODELS = {"shapes-base": ASSETS_DIR / "shapes-base"}
# The reproduction's MTU model on shapes-base, every task trained (MTU weights alone; written by
# `mtu reproduce`, see its README). Absent until that run has finished.
SHIPPED_MTU = ASSETS_DIR / "shapes-mtu"
SHIPPED_MTU_NAME = "shapes-mtu"


def shipped_mtu() -> Path | None:
    """The folder of the shipped trained MTU model, or None when none is shipped."""
    return SHIPPED_MTU if (SHIPPED_MTU / "mtu_config.json").is_file() else None


# Sampler settings the shipped model is evaluated with (documented in its model card).
SHAPES_BASE_SAMPLER = {"num_inference_steps": 25, "guidance_scale": 1.0}


def resolve_model_path(name_or_path: str | Path) -> Path:
    """The folder of a model reference, the one place every model name is resolved, tried in this order:
    a shipped name (``"shapes-base"``), a local folder, then a Hugging Face Hub id (``"org/name"``: its
    cached snapshot, else downloaded unless ``HF_HUB_OFFLINE`` is set; `mtu.hub`).

    Raises:
        FileNotFoundError: none of them (the message says what was tried, or that the path is a file).
    """
    key = str(name_or_path)
    if key == SHIPPED_MTU_NAME:
        if shipped_mtu() is None:
            raise FileNotFoundError(
                f"{key!r} is not shipped in this installation yet (`mtu reproduce` writes it); "
                "use 'shapes-base' or an MTU folder"
            )
        return SHIPPED_MTU
    if key in SHIPPED_MODELS:
        path = SHIPPED_MODELS[key]
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"the shipped model {key!r} is missing its weights at {path}; reinstall mtu-diffusion or "
                "re-create them with `mtu pretrain-shapes`"
            )
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        from mtu.hub import hub_folder, is_hub_id

        if isinstance(name_or_path, str) and is_hub_id(name_or_path):
            return hub_folder(name_or_path)
        raise FileNotFoundError(
            f"model {key!r} is neither a local folder nor a shipped model name "
            f"({', '.join(sorted([*SHIPPED_MODELS, SHIPPED_MTU_NAME]))}) nor a Hugging Face Hub id (org/name)"
        )
    if not path.is_dir():
        # FileNotFoundError like a missing path, so callers catching that (training config checks) catch this too.
        raise FileNotFoundError(f"model {key!r} is a file; a model is a folder (a diffusers pipeline or an MTU folder)")
    return path


def local_model_path(reference: object) -> Path | None:
    """The folder of a model reference if it is on this machine (`resolve_model_path` without downloading);
    None otherwise. What the output checks compare with (`mtu.utils.outputs.check_not_source`)."""
    from mtu.hub import is_hub_id

    if not isinstance(reference, (str, Path)) or not str(reference).strip():
        return None
    if isinstance(reference, str) and is_hub_id(reference) and not Path(reference).expanduser().exists():
        return None  # a hub id: downloading it only to compare paths would be wrong
    try:
        return resolve_model_path(reference)
    except (FileNotFoundError, ValueError):
        return None
