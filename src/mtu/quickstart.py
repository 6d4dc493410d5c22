"""`mtu quickstart`: the whole story on the shipped Shapes model in a few CPU minutes.

Upcycle `shapes-base`, score the untrained model on every task, train all five tasks together, score
again, and write a Markdown report with input / output / target grids, the metrics before and after,
and the router weights per task and layer. A few hundred steps cannot learn the image tasks, so beside
its own run the report scores the shipped `shapes-mtu` (the reproduction's model, trained on the full
budget) on the same examples: what training for longer gives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from mtu.assets import ASSETS_DIR, SHAPES_BASE_SAMPLER, resolve_model_path, shipped_mtu
from mtu.config import DEFAULT_TASKS
from mtu.evaluation.shapes_eval import IMAGE_ONLY_SUFFIX
from mtu.evaluation.shapes_metrics import summary
from mtu.utils.outputs import check_not_source

DEFAULT_CONFIG = ASSETS_DIR / "configs" / "shapes.yaml"
TASKS = DEFAULT_TASKS  # the five tasks an MTUConfig serves by default
GRID_EXAMPLES = 4


def quickstart(
    out: str | Path = "outputs/quickstart",
    steps: int = 300,
    eval_samples: int = 32,
    seed: int = 0,
    config: str | Path = DEFAULT_CONFIG,
    eval_steps: int = 25,
    shipped: str | Path | None = "default",
) -> Path:
    """Run the quickstart; returns the path of the report (`out/report.md`).

    Args:
        out: folder for the run, the figures and the report (a finished run is reused: delete it to redo).
        steps: optimizer steps of multi-task training (with the defaults the whole run takes ~3 minutes on 2 CPU cores).
        eval_samples: held-out Shapes examples per task for the before/after metrics.
        seed: training seed and evaluation seed.
        config: the training config (default: the packaged copy of configs/shapes.yaml).
        eval_steps: denoising steps of every evaluation and example (the shipped model's default is 25).
        shipped: a trained MTU folder scored beside the run on the same examples ("default": the shipped
            `shapes-mtu` when this installation has it; None: none).
    """
    from mtu.training import load_config, train

    out = Path(out)
    started = time.perf_counter()
    overrides = {
        "output_dir": str(out / "run"),
        "train.max_steps": steps,
        "seed": seed,
        "logging.log_with": "none",
        "logging.sample_every": 0,
        "checkpoint.every": max(steps // 2, 1),
    }
    training = load_config(config, overrides)  # checks output_dir against the base model too
    shipped = shipped_mtu() if shipped == "default" else shipped
    # before anything is written; files are added to `out`, so holding a model (`--out .`) is fine
    check_not_source(out, [resolve_model_path(training.model), shipped], replaced=False)
    out.mkdir(parents=True, exist_ok=True)
    sampler = {**SHAPES_BASE_SAMPLER, "num_inference_steps": eval_steps}
    before = _evaluate(_pipeline(training.model), eval_samples, seed, sampler)  # upcycled afresh: the base model
    model_dir = out / "run" / "model"
    if not (model_dir / "mtu_model.safetensors").is_file():
        resume = "latest" if (out / "run").is_dir() else None
        model_dir = Path(train(training, resume=resume)["model"])
    pipe = _pipeline(model_dir)
    after = _evaluate(pipe, eval_samples, seed, sampler)
    grids = {task: _example_grid(pipe, task, out / f"examples-{task}.png", seed, sampler) for task in TASKS}
    router = _router_figure(pipe, out / "router.png")
    full = None
    if shipped is not None:
        reference = _pipeline(shipped)
        full = {
            "metrics": _evaluate(reference, eval_samples, seed, sampler),
            "grids": {
                task: _example_grid(reference, task, out / f"shipped-{task}.png", seed, sampler)
                for task in TASKS
                if task in reference.unet.task_names
            },
        }
    minutes = (time.perf_counter() - started) / 60
    report = _write_report(out, before, after, grids, router, steps, eval_samples, minutes, full)
    metrics = {"before": before, "after": after, **({"shipped": full["metrics"]} if full else {})}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    return report


def _pipeline(model: str | Path):
    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _evaluate(pipe, samples: int, seed: int, sampler: dict) -> dict:
    """Every task's metrics, keyed by task; sr and inpaint once more from the image alone (empty prompts)."""
    from mtu.evaluation.shapes_eval import evaluate_mtu_task, parse_scored_name, with_image_only

    metrics = {}
    for name in with_image_only(TASKS):
        task, prompt = parse_scored_name(name)
        if task not in pipe.unet.task_names:  # a model trained on fewer tasks
            continue
        metrics[name] = evaluate_mtu_task(pipe, task, samples, seed, batch_size=16, prompt=prompt, **sampler)
    return metrics


@torch.no_grad()
def _example_grid(pipe, task: str, path: Path, seed: int, sampler: dict) -> Path:
    """Rows of (input, output, target) on held-out examples, enlarged 3x for viewing."""
    from mtu.data.shapes.tasks import evaluation_set
    from mtu.evaluation.shapes_eval import example_request

    examples = evaluation_set(task, GRID_EXAMPLES, seed + 1)
    steps = sampler["num_inference_steps"]
    settings = {k: v for k, v in sampler.items() if k != "num_inference_steps"}
    requests = [example_request(example, seed, index, settings) for index, example in enumerate(examples)]
    outputs = [images[0] for images in pipe.run_batch(requests, num_inference_steps=steps, output_type="np")]
    size = examples[0].target.shape[0]
    rows = []
    for example, output in zip(examples, outputs):
        source = example.image if example.image is not None else np.full((size, size, 3), 255, np.uint8)
        source = np.asarray(PIL.Image.fromarray(source).resize((size, size), PIL.Image.NEAREST))
        rows.append(np.concatenate([source, (output * 255).round().astype(np.uint8), example.target], axis=1))
    grid = PIL.Image.fromarray(np.concatenate(rows, axis=0))
    grid = grid.resize((grid.width * 3, grid.height * 3), PIL.Image.NEAREST)
    grid.save(path)
    (path.with_suffix(".txt")).write_text("\n".join(e.prompt for e in examples) + "\n")
    return path


def _router_figure(pipe, path: Path) -> tuple[Path, str]:
    from mtu.evaluation.analysis import router_analysis
    from mtu.evaluation.router_health import router_health

    analysis = router_analysis(pipe.unet.routing_weights(), pipe.unet.task_names)
    # The health line first: whether the routers still route by task is what the weights are read for.
    return analysis.plot(path), f"{router_health(pipe.unet).summary_line()}\n\n{analysis.summary()}"


def _write_report(
    out: Path,
    before: dict,
    after: dict,
    grids: dict,
    router: tuple[Path, str],
    steps: int,
    samples: int,
    minutes: float,
    full: dict | None = None,
) -> Path:
    lines = [
        "# mtu quickstart report",
        "",
        f"`shapes-base` upcycled into one multi-task model (5 tasks, experts per FFN from the config) and trained "
        f"for {steps} optimizer steps on all tasks at once; {minutes:.1f} minutes in all. Metrics on {samples} "
        "held-out Shapes examples per task (exact targets): attribute accuracy read back by the scene parser, "
        "and PSNR/SSIM against the target for the image tasks.",
        "",
        "| task | untrained (just upcycled) | trained (this run) | shapes-mtu (shipped, full budget) |",
        "|---|---|---|---|",
    ]
    shipped = (full or {}).get("metrics", {})
    lines += [
        f"| {row} | {summary(row, before[row])} | {summary(row, after[row])} | "
        f"{summary(row, shipped[row]) if row in shipped else 'not shipped in this installation'} |"
        for row in before
    ]
    image_only = IMAGE_ONLY_SUFFIX.strip()
    lines += [
        "",
        "The untrained model is exactly the base model: its t2i is the base's, and the image tasks ignore "
        "their input (their extra input channels start at zero). A Shapes caption names every object and the "
        "background, so with its caption the base already paints the sr and inpaint targets without reading "
        f"the image; the rows marked {image_only} score them with empty prompts, where only the image tells "
        "the model what to draw: those show what training taught.",
        "",
    ]
    for task in TASKS:
        prompts = grids[task].with_suffix(".txt").read_text().strip().splitlines()
        lines += [f"## {task}", "", "Columns: input (blank for t2i) | output | target. Prompts, top to bottom:", ""]
        lines += [f"{i + 1}. {prompt}" for i, prompt in enumerate(prompts)]
        lines += ["", f"This run: ![{task}]({grids[task].name})", ""]
        if full and task in full["grids"]:
            lines += [f"shapes-mtu, same examples: ![{task} shapes-mtu]({full['grids'][task].name})", ""]
    lines += ["## Router weights per task and layer", "", router[1], "", f"![router]({router[0].name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
