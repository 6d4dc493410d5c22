"""`mtu pretrain-shapes`: train (or resume, or export) the shipped shapes-base model."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain-shapes",
        help="train the tiny shapes-base Stable Diffusion model from scratch (resumable)",
        description="Stage 1 trains the VAE, stage 2 the text encoder + UNet, on fresh Shapes scenes. "
        "Ctrl-C / SIGTERM checkpoint before exiting; --resume continues from the last checkpoint.",
    )
    parser.add_argument("--out", help="run folder (checkpoints, logs, tokenizer, VAE); omit with --evaluate alone")
    parser.add_argument("--vae-steps", type=int, help="stage-1 steps (default 4000; resume: the saved value)")
    parser.add_argument("--unet-steps", type=int, help="stage-2 steps (default 1661; resume: the saved value)")
    parser.add_argument("--seed", type=int, help="seed of a new run (default 0)")
    parser.add_argument("--batch-size", type=int, help="stage-2 batch size (default 256)")
    parser.add_argument("--lr", type=float, help="stage-2 peak learning rate (default 1e-3)")
    parser.add_argument("--warmup-steps", type=int, help="stage-2 warmup steps (default 500)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, ...")
    parser.add_argument(
        "--data-workers",
        type=int,
        default=0,
        help="processes rendering batches ahead (default 0; a GPU wants one per spare CPU core)",
    )
    parser.add_argument(
        "--time-limit", type=float, help="seconds after which to checkpoint (and export) and stop; --resume continues"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave a core free)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--export-to", help="write the model here as a diffusers folder during stage 2 and at its end")
    parser.add_argument("--export-every", type=int, help="stage-2 steps between exports (default 1000)")
    parser.add_argument(
        "--export-only", action="store_true", help="export the latest stage-2 checkpoint to --export-to and exit"
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="then measure the --export-to folder (VAE PSNR + parser, t2i accuracy) and write it into its card",
    )
    parser.add_argument("--eval-samples", type=int, default=500, help="held-out scenes / captions for --evaluate")
    parser.add_argument(
        "--record-rerun",
        metavar="RERUN_FOLDER",
        help="file an evaluated re-run of the recipe (its --export-to folder) in the --export-to folder's card",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtu.pretrain.train import export_run

    if (args.export_only or args.evaluate or args.record_rerun) and not args.export_to:
        raise ValueError("--export-only, --evaluate and --record-rerun need --export-to DIR")
    if args.out is None and not (args.evaluate or args.record_rerun):
        raise ValueError(
            "--out DIR is required (the run folder); only --evaluate / --record-rerun with --export-to DIR work "
            "without it"
        )
    if args.export_only:
        print(f"exported to {export_run(args.out, args.export_to)}")
    elif args.out is not None:
        _train(args)
    if args.evaluate:
        import torch

        from mtu.pretrain.evaluate import evaluate_export

        torch.set_num_threads(args.threads)
        evaluation = evaluate_export(args.export_to, args.eval_samples, device=args.device)
        print(
            json.dumps(
                {
                    "vae_psnr_db": evaluation["vae"]["psnr_db"],
                    "t2i_all_correct": evaluation["t2i"]["all_correct"],
                    "t2i_single_object_all_correct": evaluation["t2i"]["by_num_objects"]
                    .get("1", {})
                    .get("all_correct"),
                }
            )
        )
    if args.record_rerun:
        from mtu.pretrain.evaluate import record_rerun

        print(json.dumps(record_rerun(args.export_to, args.record_rerun)))
    return 0


def _train(args: argparse.Namespace) -> None:
    from mtu.pretrain.train import pretrain_shapes

    overrides = {
        "vae_steps": args.vae_steps,
        "unet_steps": args.unet_steps,
        "seed": args.seed,
        "export_every": args.export_every,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
    }
    summary = pretrain_shapes(
        args.out,
        overrides,
        resume=args.resume,
        export_to=args.export_to,
        threads=args.threads,
        device=args.device,
        data_workers=args.data_workers,
        time_limit=args.time_limit,
    )
    print(json.dumps(summary))
