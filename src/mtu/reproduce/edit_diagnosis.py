"""Why does edit not learn? Per edit kind, what the parser finds wrong, under a grid of sampler settings.

Issue 27 item 3, on the validation split only. For a trained MTU folder and each (text guidance, image
guidance) of InstructPix2Pix's dual guidance, every validation edit example is sampled and parsed; per edit
kind (recolor, reshape, background, move: the kinds the Shapes world makes) the share of outputs with the
whole scene right and each attribute right. A VAE round trip of the exact targets gives the ceiling the
latent space allows (a task cannot be learned past what decode(encode(target)) parses as).

    python -m mtu.reproduce.edit_diagnosis --model shapes-mtu --samples 64 --out reproduction/edit_diagnosis.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mtu.config import write_text_atomic
from mtu.data.shapes.parser import parse_scene
from mtu.data.shapes.tasks import EDIT_KINDS, VALIDATION_SEED, TaskExample, evaluation_set
from mtu.evaluation.shapes_metrics import score_scene

ATTRIBUTES = ("all_correct", "background", "count", "color", "shape", "position")
GUIDANCE_GRID = ((1.0, 1.0), (3.0, 1.5), (7.5, 1.5), (3.0, 3.0))  # (text, image); (1, 1) is the protocol's
TASK = "edit"  # the task the record diagnoses (its examples are edit examples)
RECORD_FILE = Path("reproduction") / "edit_diagnosis.json"


def edit_kind(example: TaskExample) -> str:
    """Which of `EDIT_KINDS` an edit example asks for, read from its scene and target scene."""
    before, after = example.scene, example.target_scene
    if before.background != after.background:
        return "background"
    old = next(o for o in before.objects if o not in after.objects)
    new = next(o for o in after.objects if o not in before.objects)
    return "recolor" if new.color != old.color else "reshape" if new.shape != old.shape else "move"


def by_kind(outputs: list[np.ndarray], examples: list[TaskExample]) -> dict[str, dict[str, float]]:
    """Per edit kind, the mean of each parser score (an image with no expected object scores 1 on them)."""
    kinds = [edit_kind(e) for e in examples]
    table = {}
    for kind in EDIT_KINDS:
        rows = [score_scene(parse_scene(o), e.target_scene) for o, e, k in zip(outputs, examples, kinds) if k == kind]
        means = {a: float(np.mean([np.mean(r[a]) if r[a] else 1.0 for r in rows])) for a in ATTRIBUTES} if rows else {}
        table[kind] = {"examples": len(rows), **{a: round(v, 3) for a, v in means.items()}}
    return table


def sample_edits(pipe, examples: list[TaskExample], guidance: float, image_guidance: float) -> list[np.ndarray]:
    from mtu.evaluation.shapes_eval import example_request

    sampler = {"guidance_scale": guidance, "image_guidance_scale": image_guidance}
    outputs = []
    for start in range(0, len(examples), 32):
        batch = examples[start : start + 32]
        requests = [example_request(e, VALIDATION_SEED, start + i, sampler) for i, e in enumerate(batch)]
        for images in pipe.run_batch(requests, num_inference_steps=25, output_type="np"):
            outputs.extend(images)
    return [np.asarray(o) if np.asarray(o).dtype == np.uint8 else (np.asarray(o) * 255).round().astype(np.uint8)
            for o in outputs]  # fmt: skip


@torch.no_grad()
def vae_ceiling(pipe, examples: list[TaskExample]) -> dict[str, float]:
    """Parser all-correct and PSNR of decode(encode(target)): the best any denoiser can reach in this latent space."""
    targets = np.stack([e.target for e in examples]).astype(np.float32) / 127.5 - 1
    pixels = torch.from_numpy(targets).permute(0, 3, 1, 2).to(pipe.vae.device, pipe.vae.dtype)
    decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode()).sample.clamp(-1, 1)
    images = ((decoded.float() + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    errors = [np.mean((i.astype(float) - e.target.astype(float)) ** 2) for i, e in zip(images, examples)]
    correct = [score_scene(parse_scene(i), e.target_scene)["all_correct"][0] for i, e in zip(images, examples)]
    return {"all_correct": float(np.mean(correct)), "psnr": float(np.mean([10 * np.log10(255**2 / m) for m in errors]))}


def diagnose(model: str, samples: int, grid=GUIDANCE_GRID) -> dict:
    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    examples = evaluation_set("edit", samples, VALIDATION_SEED)
    record = {"model": model, "samples": samples, "split": "validation", "steps": 25, "settings": []}
    record["vae_ceiling"] = vae_ceiling(pipe, examples)
    for guidance, image_guidance in grid:
        started = time.perf_counter()
        table = by_kind(sample_edits(pipe, examples, guidance, image_guidance), examples)
        setting = {"guidance": guidance, "image_guidance": image_guidance, "by_kind": table}
        setting["seconds"] = round(time.perf_counter() - started, 1)
        record["settings"].append(setting)
        print(json.dumps(setting), flush=True)
    return record


def overall(setting: dict) -> float:
    """All-correct over every example of a sampler setting (its kinds weighted by their example counts)."""
    kinds = [k for k in setting["by_kind"].values() if k["examples"]]
    return sum(k["all_correct"] * k["examples"] for k in kinds) / sum(k["examples"] for k in kinds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-mtu", help="trained MTU folder or shipped name")
    parser.add_argument("--samples", type=int, default=64, help="validation edit examples (default 64)")
    parser.add_argument("--out", type=Path, default=None, help="write the record (JSON) here")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    record = diagnose(args.model, args.samples)
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
