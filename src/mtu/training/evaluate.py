"""Score a trained run (any method) on the held-out Shapes tasks through `MTUPipeline`.

`mtu eval --model <run>/model` covers MTU folders; this also loads the LoRA / IA3 baselines (switching
adapters per task) and the untrained upcycled model ("before"), which equals the base model for every
task. Scoring is `mtu.evaluation.shapes_eval.evaluate_mtu_task`.

    >>> from mtu.training.evaluate import evaluate_run
    >>> evaluate_run("runs/shapes-mtu/model", num_samples=64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtu.training.methods import METHOD_FILE, activate, build_model, load_trained, mtu_config_of


def run_pipeline(folder: str | Path | None, config=None, device: str = "cpu"):
    """An `MTUPipeline` for a `save_trained` folder, or (folder None) a fresh upcycle of `config`'s base."""
    from diffusers import DDIMScheduler, DiffusionPipeline

    from mtu.config import MTUConfig
    from mtu.pipelines import MTUPipeline
    from mtu.training.components import model_folder

    if folder is not None:
        if not (Path(folder) / METHOD_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {METHOD_FILE}: pass the model/ folder of an `mtu train` run")
        base = MTUConfig.load(folder).base_model_name_or_path
    else:
        base = config.model
    stock = DiffusionPipeline.from_pretrained(model_folder(base))
    parts = stock.components
    if folder is not None:
        model = load_trained(parts["unet"], folder)
    else:
        model = build_model(parts["unet"], "mtu", mtu_config_of(config))
    names = ("vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    scheduler = DDIMScheduler.from_config(parts["scheduler"].config)
    pipeline = MTUPipeline(unet=model.eval(), scheduler=scheduler, **{n: parts.get(n) for n in names})
    return pipeline.to(device)


def evaluate_run(
    folder: str | Path | None,
    tasks: list[str] | None = None,
    num_samples: int = 64,
    seed: int = 0,
    config=None,
    device: str = "cpu",
    prompt: bool = True,
    **sampler: Any,
) -> dict[str, dict]:
    """Shapes metrics per task: t2i attribute accuracy; PSNR / SSIM / attribute accuracy for the others.

    Args:
        folder: a run's `model/` folder (any method), or None with `config` for the untrained upcycle.
        tasks: tasks to score (default: every Shapes task the model serves).
        num_samples, seed: held-out examples per task and their seed (`evaluation_set`).
        prompt: False scores with empty prompts (the image tasks from their images alone).
        sampler: `evaluate_mtu_task` settings, e.g. num_inference_steps, guidance_scale.
    """
    from mtu.data.shapes.tasks import TASKS
    from mtu.evaluation.shapes_eval import evaluate_mtu_task

    pipeline = run_pipeline(folder, config, device)
    model = pipeline.unet
    results = {}
    for task in tasks or [t for t in model.task_names if t in TASKS]:
        activate(model, task)
        with torch.no_grad():
            results[task] = evaluate_mtu_task(pipeline, task, num_samples, seed, prompt=prompt, **sampler)
    return results


def summary_line(task: str, metrics: dict) -> str:
    """One line per task: the headline numbers."""
    from mtu.evaluation.shapes_metrics import summary

    return f"{task:<8} " + summary(task, metrics, separator="  ")


def main(argv: list[str] | None = None) -> None:
    """`python -m mtu.training.evaluate RUN/model [--before CONFIG]`: print Shapes metrics as JSON lines."""
    import argparse
    import json

    from mtu.assets import SHAPES_BASE_SAMPLER
    from mtu.training.config import load_config

    parser = argparse.ArgumentParser(prog="python -m mtu.training.evaluate", description=main.__doc__)
    parser.add_argument("folder", nargs="?", help="a run's model/ folder (omit with --before)")
    parser.add_argument("--before", metavar="CONFIG", help="score the untrained upcycle of this training config instead")
    parser.add_argument("--tasks", help="comma-separated tasks (default: all Shapes tasks of the model)")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=SHAPES_BASE_SAMPLER["num_inference_steps"])
    parser.add_argument("--guidance", type=float, default=SHAPES_BASE_SAMPLER["guidance_scale"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-prompt", action="store_true", help="empty prompts: the image tasks from their images alone")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.folder is None) == (args.before is None):
        parser.error("pass a model folder or --before CONFIG")
    config = load_config(args.before) if args.before else None
    tasks = args.tasks.split(",") if args.tasks else None
    results = evaluate_run(args.folder, tasks, args.num_samples, args.seed, config, prompt=not args.no_prompt,
                           num_inference_steps=args.steps, guidance_scale=args.guidance)  # fmt: skip
    for task, metrics in results.items():
        print(summary_line(task, metrics), flush=True)
        print(json.dumps(metrics), flush=True)


if __name__ == "__main__":
    main()
