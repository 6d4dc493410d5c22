"""Measure an exported shapes-base folder and write the figures into its model card.

Two measurements, both on held-out Shapes sets that no training stream can draw:
the VAE (encode -> decode the targets of ``evaluation_set("t2i", n, seed)``: PSNR and the parser's
agreement with the true scenes) and text-to-image (`evaluate_t2i` with the default sampler).
`record_rerun` then files an evaluated re-run of the recipe beside them, so the card shows whether
the recipe reproduces the shipped quality.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtu.assets import SHAPES_BASE_SAMPLER
from mtu.data.shapes import evaluation_set
from mtu.evaluation.shapes_eval import evaluate_t2i
from mtu.evaluation.shapes_metrics import t2i_accuracy
from mtu.pretrain.card import render_card, run_summary
from mtu.pretrain.data import images_to_tensor, tensor_to_uint8
from mtu.pretrain.export import INFO_FILE
from mtu.pretrain.objectives import psnr_uint8, vae_reconstructions
from mtu.utils.outputs import write_text_atomic


def vae_report(vae, num_scenes: int, seed: int = 0) -> dict:
    """PSNR of the VAE's reconstructions of held-out scenes and the parser's accuracy on them."""
    examples = evaluation_set("t2i", num_scenes, seed)
    images = images_to_tensor([example.target for example in examples])
    reconstructions = vae_reconstructions(vae, images)
    parsed = t2i_accuracy(reconstructions, [example.target_scene for example in examples])
    return {
        "num_scenes": num_scenes,
        "seed": seed,
        "psnr_db": psnr_uint8(reconstructions, tensor_to_uint8(images)),
        "parser": {k: v for k, v in parsed.items() if k != "by_num_objects"},
    }


def evaluate_export(
    folder: str | Path, num_samples: int = 500, seed: int = 0, device: str | None = None, batch_size: int = 50
) -> dict:
    """Measure the shapes-base folder `folder` and store the figures in its pretrain_info.json and README.md.

    Returns:
        ``{"vae": vae_report(...), "t2i": evaluate_t2i(...)}`` as stored under ``"evaluation"``.
    """
    folder = Path(folder)
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: {folder} is not a folder written by mtu pretrain-shapes")
    pipeline = _stock_pipeline(folder, device)
    evaluation = {
        "vae": vae_report(pipeline.vae, num_samples, seed),
        "t2i": evaluate_t2i(pipeline, num_samples, seed, batch_size=batch_size, **SHAPES_BASE_SAMPLER),
        "device": str(pipeline.device),
        "batch_size": batch_size,  # the noise stream depends on it (one generator across batches)
    }
    info = json.loads(info_path.read_text())
    info["evaluation"] = evaluation
    write_text_atomic(info_path, json.dumps(info, indent=1) + "\n")
    write_text_atomic(folder / "README.md", render_card(info))
    return evaluation


def record_rerun(folder: str | Path, rerun_folder: str | Path) -> dict:
    """File the evaluated re-run `rerun_folder` under ``"reruns"`` in `folder`'s info and card.

    Both folders must have been measured by `evaluate_export` with the same number of samples and the
    same recipe (everything but the seed and the bookkeeping), or the comparison would mean nothing.
    A re-run with the seed and hardware of one already filed replaces it.
    """
    folder, rerun_folder = Path(folder), Path(rerun_folder)
    infos = []
    for path in (folder / INFO_FILE, rerun_folder / INFO_FILE):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a folder written by mtu pretrain-shapes")
        infos.append(json.loads(path.read_text()))
    info, rerun = infos
    shipped, summary = run_summary(info, folder), run_summary(rerun, rerun_folder)
    bookkeeping = {"seed", "checkpoint_every", "export_every"}
    differing = sorted(
        k for k in info["config"] if k not in bookkeeping and info["config"][k] != rerun["config"].get(k)
    )
    if differing:
        raise ValueError(f"{rerun_folder} was trained with other settings ({', '.join(differing)}): not a re-run")
    if summary["t2i_num_samples"] != shipped["t2i_num_samples"] or not summary["finished"]:
        raise ValueError(f"{rerun_folder} is unfinished or measured on another number of samples than {folder}")
    reruns = [r for r in info.get("reruns", []) if (r["seed"], r["hardware"]) != (summary["seed"], summary["hardware"])]
    info["reruns"] = reruns + [summary]
    write_text_atomic(folder / INFO_FILE, json.dumps(info, indent=1) + "\n")
    write_text_atomic(folder / "README.md", render_card(info))
    return summary


def _stock_pipeline(folder: Path, device: str | None):
    """The exported folder as its users load it: stock diffusers, no MTU layers, no safety checker. What the
    card measures is the shipped artefact itself (`mtu eval --model shapes-base` scores the same images through
    the loader's function-preserving upcycle)."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    return pipeline.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
