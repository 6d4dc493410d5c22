"""Tiny Stable Diffusion components built in code (no downloads), shared by the tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

import mtu
from mtu.pipelines import MTUPipeline, MTURequest
from tests.core.tiny_models import tiny_sd_unet, tiny_sdxl_unet


def tiny_tokenizer(folder: Path, model_max_length: int = 16) -> CLIPTokenizer:
    """A character-level CLIP BPE vocabulary: every word splits into letters, no merges needed."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [",", "."]
    tokens = letters + [f"{letter}</w>" for letter in letters] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=model_max_length)


def tiny_text_encoder(vocab_size: int, hidden_size: int = 16, projection: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        projection_dim=hidden_size,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_vae() -> AutoencoderKL:
    """16x16 images <-> 8x8x4 latents (downsampling factor 2)."""
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()


def tiny_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )


def tiny_sd_components(folder: Path) -> dict:
    """Components of a tiny SD 1.x-layout pipeline (tokenizer files are written under `folder`)."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-files")
    unet = tiny_sd_unet()
    return {
        "vae": tiny_vae(),
        "text_encoder": tiny_text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": tiny_scheduler(),
    }


def tiny_sdxl_components(folder: Path) -> dict:
    """Components of a tiny SDXL-layout pipeline: two text encoders, text_time added conditioning."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-files")
    unet = tiny_sdxl_unet(cross_attention_dim=32, pooled_dim=16)  # 16 + 16 from the two text encoders
    return {
        "vae": tiny_vae(),
        "text_encoder": tiny_text_encoder(len(tokenizer), seed=0),
        "tokenizer": tokenizer,
        "text_encoder_2": tiny_text_encoder(len(tokenizer), projection=True, seed=1),
        "tokenizer_2": tokenizer,
        "unet": unet,
        "scheduler": tiny_scheduler(),
    }


TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]  # the tests' MTU models: one task of each conditioning kind


def perturb(model: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Simulate training: move every trainable weight, the zero-initialised ones too, so that tasks (and their
    routers) really differ; returns `model`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def mtu_pipeline(components: dict, tasks=TASKS) -> MTUPipeline:
    """An MTUPipeline of tiny `components` whose tasks really differ (`perturb`), progress bars off."""
    components = dict(components)
    unet = copy.deepcopy(components["unet"])  # upcycle changes its model in place
    components["unet"] = perturb(mtu.upcycle(unet, mtu.MTUConfig(tasks=tasks, num_experts=4)), scale=0.05)
    pipe = MTUPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sd_pipeline(folder: Path) -> Path:
    """A stock StableDiffusionPipeline folder of tiny random components; returns its path."""
    pipeline = StableDiffusionPipeline(
        **tiny_sd_components(folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def upcycle_tiny_sd_pipeline(root: Path) -> Path:
    """`mtu upcycle --experts 2` (the default tasks) of a tiny SD pipeline saved under `root`; returns the MTU
    folder, root / "mtu" (the base is root / "base" / "pipeline")."""
    from mtu.cli.main import main

    base = save_tiny_sd_pipeline(root / "base")
    assert main(["upcycle", "--base", str(base), "--experts", "2", "--out", str(root / "mtu")]) == 0
    return root / "mtu"


def save_tiny_sdxl_pipeline(folder: Path) -> Path:
    """A stock StableDiffusionXLPipeline folder of tiny random components; returns its path."""
    from diffusers import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline(**tiny_sdxl_components(folder))
    pipeline.save_pretrained(folder / "pipeline-xl")
    return folder / "pipeline-xl"


def generate_argv(model, task: str, out, *options: str) -> list[str]:
    """The argv of a two-step `mtu generate` of "a red circle" (`options`: --image, --runtime onnx, ...)."""
    request = ["--task", task, "--prompt", "a red circle", "--steps", "2"]
    return ["generate", "--model", str(model), *request, "--out", str(out), *options]


# --- small datasets in the paper's formats (Shapes scenes as content) --------------------------------


def _scene_images(count: int, seed: int = 0, size: int = 32):
    """(image, caption) pairs of random Shapes scenes; each image a uint8 (size, size, 3) array."""
    import numpy as np

    from mtu.data.shapes import caption, render, sample_scene

    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(count)]
    return [(render(scene, size), caption(scene)) for scene in scenes]


def _save_png(array, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path.name if path.parent.name == "" else f"{path.parent.name}/{path.name}"


def write_coco_jsonl(folder: Path, count: int = 6) -> Path:
    """COCO-captions style t2i data: {"image": path, "caption": [several captions]} per line."""
    lines = []
    for i, (image, text) in enumerate(_scene_images(count, seed=1)):
        lines.append(
            {"image": _save_png(image, folder / "images" / f"{i}.png"), "caption": [text, f"a picture: {text}"]}
        )
    path = folder / "captions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def write_ip2p_dataset(folder: Path, count: int = 6) -> Path:
    """InstructPix2Pix style edit data saved with `datasets.save_to_disk`: input_image, edit_prompt, edited_image."""
    import datasets
    from PIL import Image

    images = _scene_images(2 * count, seed=2)
    data = {
        "input_image": [Image.fromarray(images[2 * i][0]) for i in range(count)],
        "edit_prompt": [f"turn it into {images[2 * i + 1][1]}" for i in range(count)],
        "edited_image": [Image.fromarray(images[2 * i + 1][0]) for i in range(count)],
    }
    features = datasets.Features(
        {"input_image": datasets.Image(), "edit_prompt": datasets.Value("string"), "edited_image": datasets.Image()}
    )
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(folder / "ip2p"))
    return folder / "ip2p"


def write_gqa_inpaint_jsonl(folder: Path, count: int = 6) -> Path:
    """GQA-Inpaint style removal data: {"source_image", "instruction", "target_image"} per line."""
    lines = []
    for i, ((source, _), (target, _)) in enumerate(zip(_scene_images(count, seed=3), _scene_images(count, seed=4))):
        lines.append(
            {
                "source_image": _save_png(source, folder / "source" / f"{i}.png"),
                "instruction": "remove the object",
                "target_image": _save_png(target, folder / "target" / f"{i}.png"),
            }
        )
    path = folder / "gqa_inpaint.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def write_image_folder(folder: Path, count: int = 6, size: int = 32) -> Path:
    """A folder of images with same-name .txt captions (sr and inpaint data)."""
    for i, (image, text) in enumerate(_scene_images(count, seed=5, size=size)):
        _save_png(image, folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(text)
    return folder


# Small request inputs shared by the pipeline and deploy tests.
def picture(seed: int, size: int = 16) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def box_mask(size: int = 16) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    return PIL.Image.fromarray(mask)


def request_for(task: str, seed: int = 0, **overrides) -> MTURequest:
    """A seeded MTURequest of `task` with guidance on, so every guidance layout runs."""
    inputs = {
        "t2i": {"prompt": "a red circle"},
        "edit": {"prompt": "make it blue", "image": picture(1)},
        "sr": {"prompt": "", "image": picture(2, size=4)},
        "remove": {"prompt": "remove the red circle", "image": picture(3)},
        "inpaint": {"prompt": "a red circle", "image": picture(4), "mask_image": box_mask()},
    }[task]
    settings = {"guidance_scale": 3.0, "image_guidance_scale": 1.5, "generator": torch.Generator().manual_seed(seed)}
    return MTURequest(task, **{**inputs, **settings, **overrides})
