"""The model card (README.md) written into every exported shapes-base folder, from measured numbers."""

from __future__ import annotations

from pathlib import Path

from mtu.assets import SHAPES_BASE_SAMPLER


def _fmt(value, pattern: str, missing: str = "not measured yet") -> str:
    return missing if value is None else pattern.format(value)


def _recipe_command(config: dict, hardware: str | None) -> str:
    where = "--device cuda --data-workers 14" if hardware and "GPU" in hardware else "--threads 2"
    return (
        f"mtu pretrain-shapes --out runs/shapes-base {where} "
        f"--vae-steps {config['vae_steps']} --unet-steps {config['unet_steps']} --batch-size {config['batch_size']} "
        f"--lr {config['lr']:g} --warmup-steps {config['warmup_steps']} --export-to src/mtu/assets/shapes-base"
    )


def _minutes(seconds: float | None) -> str:
    return "" if not seconds else f", {seconds / 60:.1f} min in all"


def _architecture_rows(info: dict) -> str:
    sizes, params = info["config"]["sizes"], info["parameters"]
    levels = ", ".join(str(16 >> i) for i in range(len(sizes["unet_channels"])))
    rows = [
        (
            "tokenizer",
            "CLIPTokenizer",
            "-",
            f"byte-level BPE whose merges make each of the {info['vocabulary_words']} Shapes words one token "
            f"(other text falls back to bytes); {info['vocab_size']} tokens, max length {sizes['max_length']}",
        ),
        (
            "text encoder",
            "CLIPTextModel",
            f"{params['text_encoder']:,}",
            f"width {sizes['text_width']}, {sizes['text_layers']} causal layer(s), {sizes['text_heads']} heads",
        ),
        (
            "VAE",
            "AutoencoderKL",
            f"{params['vae']:,}",
            f"64x64x3 <-> 16x16x4, channels {tuple(sizes['vae_channels'])}, 1 resnet per block, no mid-block "
            f"attention, scaling factor {info['scaling_factor']:.4f}",
        ),
        (
            "UNet",
            "UNet2DConditionModel",
            f"{params['unet']:,}",
            f"16x16x4 in and out, channels {tuple(sizes['unet_channels'])} at {levels} px, "
            f"{sizes['unet_layers']} layer(s) per down block, cross-attention `BasicTransformerBlock`s with GEGLU "
            f"FFNs (inner 4x channels) at every level and in the mid block, heads {sizes['unet_head_dim']} wide",
        ),
        ("scheduler", "DDIMScheduler", "-", "1000 steps, cosine (`squaredcos_cap_v2`) betas, v-prediction"),
    ]
    lines = ["| component | class | parameters | details |", "|---|---|---|---|"]
    lines += [f"| {name} | `{cls}` | {count} | {details} |" for name, cls, count, details in rows]
    return "\n".join(lines)


def _recipe_steps(config: dict) -> str:
    decay = f"cosine decay to {config['final_lr_fraction']:g}x"
    return f"""1. VAE: {config["vae_steps"]:,} steps of batch {config["vae_batch_size"]}, AdamW lr {config["vae_lr"]:g}
   (warmup {config["vae_warmup_steps"]}, {decay}), loss MSE + L1 + {config["kl_weight"]:g} x mean KL per latent
   element. Scaling factor: 1 / std of the latents of 512 fresh scenes.
2. Text encoder + UNet from scratch, VAE frozen: {config["unet_steps"]:,} steps of batch {config["batch_size"]},
   AdamW lr {config["lr"]:g} (warmup {config["warmup_steps"]}, {decay}), weight decay {config["weight_decay"]:g},
   gradient norm clipped at {config["grad_clip"]:g}; v-prediction MSE whose x0-space weight (snr + 1) is capped
   at {config["min_snr_gamma"]:g} + 1 (min-SNR without down-weighting the high-noise steps that place objects);
   {config["caption_dropout"]:.0%} empty captions; EMA {config["ema_decay"]} of the weights (the EMA is exported).

Every step draws fresh scenes (`mtu.data.shapes.sample_scene`, captions with random phrasings); the batch
of step s comes from its own seed (seed {config["seed"]}, stage, s), so any number of data workers gives the
same stream. Checkpoints every {config["checkpoint_every"]} steps (safetensors + JSON, written atomically).
All settings are in `pretrain_info.json` next to this card. Without a GPU, drop `--device cuda
--data-workers 14` and give torch every core: on a 2-core CPU with `--threads 2` we measured 0.55 s per VAE
step and 5.9 s per stage-2 step (about 37 min + 2.7 h; `--threads 1`: 1.1 s and 8.4 s, about 5 h)."""


_ATTRIBUTES = ("all_correct", "background", "count", "color", "shape", "position")


def _evaluation(info: dict) -> str:
    evaluation = info.get("evaluation")
    if not evaluation:
        return "Not measured yet: `mtu pretrain-shapes --export-to THIS_FOLDER --evaluate`."
    vae, t2i = evaluation["vae"], evaluation["t2i"]
    parser = ", ".join(f"{k} {v:.1%}" for k, v in vae["parser"].items() if k in _ATTRIBUTES)
    header = "| captions | images | " + " | ".join(a.replace("_", " ") for a in _ATTRIBUTES) + " |"
    rows = [header, "|---" * (len(_ATTRIBUTES) + 2) + "|"]
    groups = [("all", t2i)] + [(f"{n} object(s)", t2i["by_num_objects"][n]) for n in sorted(t2i["by_num_objects"])]
    for label, scores in groups:
        cells = [f"{scores[a]:.1%}" if scores.get(a) is not None else "-" for a in _ATTRIBUTES]
        rows.append(f"| {label} | {scores['num_images']} | " + " | ".join(cells) + " |")
    sampler = ", ".join(f"`{k}={v}`" for k, v in t2i["sampler"].items())
    batch_size = evaluation.get("batch_size", 16)
    return f"""Measured by `mtu pretrain-shapes --export-to THIS_FOLDER --evaluate` (on {evaluation["device"]}).

- VAE on {vae["num_scenes"]} held-out scenes (seed {vae["seed"]}): PSNR **{vae["psnr_db"]:.2f} dB**; the scene parser
  reads the reconstructions as it reads the originals: {parser}.
- Text-to-image on {t2i["num_samples"]} held-out captions (the same as `mtu eval --benchmark shapes --task t2i
  --model shapes-base --num-samples {t2i["num_samples"]} --seed {t2i["seed"]} --batch-size {batch_size}`;
  {sampler}): attribute accuracy read back by the parser; "all correct" = every attribute of every
  object and the background right.

{chr(10).join(rows)}"""


def run_summary(info: dict, folder: str | Path) -> dict:
    """The figures of an evaluated export that the re-run table compares (``info``: its pretrain_info.json)."""
    evaluation = info.get("evaluation")
    if not evaluation:
        raise ValueError(
            f"{folder} has no measured figures yet: run mtu pretrain-shapes --export-to {folder} --evaluate"
        )
    t2i = evaluation["t2i"]
    return {
        "seed": info["config"]["seed"],
        "hardware": info.get("unet_hardware"),
        "minutes": ((info.get("vae_seconds_total") or 0) + (info.get("unet_seconds_total") or 0)) / 60,
        "finished": info["unet_step"] >= info["config"]["unet_steps"],
        "vae_psnr_db": evaluation["vae"]["psnr_db"],
        "vae_parser_all_correct": evaluation["vae"]["parser"]["all_correct"],
        "t2i_num_samples": t2i["num_samples"],
        "t2i_all_correct": t2i["all_correct"],
        "t2i_all_correct_by_num_objects": {n: s["all_correct"] for n, s in t2i["by_num_objects"].items()},
    }


def _reruns(info: dict) -> str:
    if not info.get("reruns"):
        return ""
    header = (
        "| run | seed | trained on | minutes | VAE PSNR | VAE parser all correct | t2i all correct "
        "| 1 object | 2 objects | 3 objects |"
    )
    rows = [header, "|---" * 10 + "|"]
    runs = [("this folder", run_summary(info, "this folder"))] + [("re-run", r) for r in info["reruns"]]
    for label, run in runs:
        by_objects = [run["t2i_all_correct_by_num_objects"].get(n) for n in ("1", "2", "3")]
        cells = [
            label,
            str(run["seed"]),
            run["hardware"] or "-",
            f"{run['minutes']:.1f}",
            f"{run['vae_psnr_db']:.2f} dB",
            f"{run['vae_parser_all_correct']:.1%}",
            f"{run['t2i_all_correct']:.1%}",
        ]
        cells += ["-" if value is None else f"{value:.1%}" for value in by_objects]
        rows.append("| " + " | ".join(cells) + " |")
    return f"""

### Re-runs of the recipe

The same command from scratch with another seed, measured the same way and filed here by
`mtu pretrain-shapes --export-to THIS_FOLDER --record-rerun RERUN_FOLDER` (minutes: training wall-clock,
both stages, evaluation excluded).

{chr(10).join(rows)}"""


_CARD_INTRO = """# shapes-base

A tiny text-to-image latent diffusion model in the standard diffusers Stable Diffusion layout, trained
from scratch on the procedural Shapes world (`mtu.data.shapes`: 1-3 coloured circles / squares /
triangles on a 3x3 grid over a plain background, 64x64). It is the model `mtu` upcycles by default.

```python
from diffusers import StableDiffusionPipeline
from mtu.assets import SHAPES_BASE_SAMPLER, resolve_model_path
pipe = StableDiffusionPipeline.from_pretrained(resolve_model_path("shapes-base"), safety_checker=None,
                                               requires_safety_checker=False)
image = pipe("a red circle at the top left, on a gray background", **SHAPES_BASE_SAMPLER).images[0]
```
"""


def _status(info: dict) -> str:
    """Where training stands, how fast it went, and the VAE's reconstruction quality."""
    config = info["config"]
    vae_speed = _fmt(info["vae_seconds_per_step"], "{:.3f} s")
    unet_speed = _fmt(info["unet_seconds_per_step"], "{:.3f} s")
    unet_where = f"{info.get('unet_hardware') or 'the CPU'}{_minutes(info.get('unet_seconds_total'))}"
    finished = info["unet_step"] >= config["unet_steps"]
    progress_note = (
        "Training is finished." if finished else "Training continues; this folder is re-exported as it improves."
    )
    return f"""- Exported {info["exported_at"]} at stage-2 step **{info["unet_step"]:,} of {config["unet_steps"]:,}**
  (text encoder + UNet, EMA weights), after {info["vae_step"]:,} VAE steps. {progress_note}
- Wall-clock per optimizer step, data included: VAE {vae_speed} (batch {config["vae_batch_size"]}, on
  {info.get("vae_hardware") or "the CPU"}{_minutes(info.get("vae_seconds_total"))}); text encoder + UNet
  {unet_speed} (batch {config["batch_size"]}, on {unet_where}).
- VAE reconstruction PSNR on {info["eval_scenes"]} held-out scenes (the targets of
  `mtu.data.shapes.evaluation_set("t2i", {info["eval_scenes"]}, seed=0)`, posterior mean, uint8 pixels):
  **{_fmt(info["vae_psnr_db"], "{:.2f} dB")}**."""


def render_card(info: dict) -> str:
    """Markdown model card. `info` is what `export.export_pipeline` writes to pretrain_info.json."""
    config = info["config"]
    sampler = ", ".join(f"`{k}={v}`" for k, v in SHAPES_BASE_SAMPLER.items())
    return f"""{_CARD_INTRO}
## Status

{_status(info)}

## Evaluation

{_evaluation(info)}{_reruns(info)}

## Default sampler

{sampler} (`mtu.assets.SHAPES_BASE_SAMPLER`) with the folder's DDIM scheduler ("trailing" spacing: sampling
starts from pure noise at t=999); 64x64 output.

## Architecture

{info["parameters"]["total"]:,} parameters; the folder holds {info["folder_megabytes"]:.1f} MB of fp32 safetensors.

{_architecture_rows(info)}

## Recipe

```
{_recipe_command(config, info.get("unet_hardware"))}
# continue after Ctrl-C / SIGTERM (both checkpoint first) or a crash (last checkpoint):
mtu pretrain-shapes --out runs/shapes-base --resume --export-to src/mtu/assets/shapes-base
# export the latest checkpoint without touching a running training:
mtu pretrain-shapes --out runs/shapes-base --export-only --export-to src/mtu/assets/shapes-base
```

{_recipe_steps(config)}
"""
