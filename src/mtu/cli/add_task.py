"""`mtu add-task`: a new MTU folder serving one more task, the existing tasks' weights copied unchanged.

    mtu add-task --model runs/shapes-mtu/model --task colorize --out models/with-colorize
    mtu add-task --model my-mtu --task depth2img:image --out my-mtu-depth

The new task starts as at upcycling (its own embedding, the base's input conv with zeroed extra channels,
copies of the base's pre-FFN norms); train it alone with `mtu train` method add-task (docs/training.md).
"""

from __future__ import annotations

import argparse

from mtu.utils.outputs import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("add-task", help="add a task to an MTU model without changing the tasks it serves")
    parser.add_argument(
        "--model", required=True, help="MTU folder (mtu upcycle / mtu add-task output, or a run's model/)"
    )
    parser.add_argument("--base", default=None, help="base model (default: the one named in the MTU folder)")
    parser.add_argument(
        "--task",
        required=True,
        metavar="NAME[:CONDITIONING]",
        help="a built-in task (colorize), or your own with its conditioning: none, image or masked_image",
    )
    parser.add_argument("--description", default="", help="one line describing a task of your own")
    parser.add_argument("--seed", type=int, default=0, help="seeds the new task's embedding (default 0)")
    parser.add_argument(
        "--out", required=True, type=output_path, help="new folder for the extended model (never --model itself)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it holds a model mtu wrote")
    parser.set_defaults(func=run)


def parse_task(text: str, description: str = ""):
    """ "colorize" -> the built-in spec; "depth2img:image" -> TaskSpec("depth2img", "image")."""
    from mtu.config import BUILTIN_TASKS, TaskSpec, as_task_spec

    name, _, conditioning = text.partition(":")
    if not conditioning:
        if name not in BUILTIN_TASKS:
            raise ValueError(
                f"--task {name!r} is not a built-in task ({sorted(BUILTIN_TASKS)}); give yours its "
                f"conditioning, e.g. --task {name}:image (none, image or masked_image)"
            )
        return as_task_spec(name)
    if conditioning == "custom":
        raise ValueError("--task: 'custom' channels need your own data code; use MTUModel.add_task in Python")
    known = BUILTIN_TASKS.get(name)
    if known is not None and known.conditioning == conditioning and not description:
        return known
    return TaskSpec(name, conditioning, description=description)


def run(args: argparse.Namespace) -> None:
    from mtu.loading import inspect_model
    from mtu.utils.outputs import check_target, write_folder

    spec = parse_task(args.task, args.description)  # a bad name or conditioning costs no model load
    source = inspect_model(args.model)
    check_target(args.out, args.overwrite, source.inputs(args.base))
    source.check_extendable()  # the baselines have no experts to share with a new task
    import torch

    from mtu.pipelines import MTUPipeline

    pipe = MTUPipeline.from_pretrained(args.model, base=args.base)
    model, served = pipe.unet, pipe.unet.task_names
    model.add_task(spec, generator=torch.Generator().manual_seed(args.seed))

    def write(folder):  # the old tasks keep their stored sampler (`mtu.sampler`); the new one has none yet
        from mtu.sampler import save_sampler

        model.save_pretrained(folder)
        if pipe.samplers:
            save_sampler(folder, pipe.samplers)

    write_folder(args.out, write, args.overwrite)  # whole: no stale files of a replaced folder
    print(model.parameter_report())
    print(
        f"\nwrote {args.out}: {served} unchanged, plus {spec.name!r} ({spec.conditioning}), untrained; "
        f"train it alone with `mtu train` method add-task, extends: {args.out}"
    )
