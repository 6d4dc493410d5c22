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
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, tokenizer, VAE)")
    parser.add_argument("--vae-steps", type=int, help="stage-1 steps (default 4000; resume: the saved value)")
    parser.add_argument("--unet-steps", type=int, help="stage-2 steps (default 30000; resume: the saved value)")
    parser.add_argument("--seed", type=int, help="seed of a new run (default 0)")
    parser.add_argument("--batch-size", type=int, help="stage-2 batch size (default 32)")
    parser.add_argument("--lr", type=float, help="stage-2 peak learning rate (default 1e-3)")
    parser.add_argument("--warmup-steps", type=int, help="stage-2 warmup steps (default 500)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--data-workers", type=int, default=0,
                        help="processes rendering batches ahead (default 0; a GPU wants one per spare CPU core)")
    parser.add_argument("--time-limit", type=float,
                        help="seconds after which to checkpoint (and export) and stop; --resume continues")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leave a core free)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--export-to", help="write the model here as a diffusers folder during stage 2 and at its end")
    parser.add_argument("--export-every", type=int, help="stage-2 steps between exports (default 1000)")
    parser.add_argument(
        "--export-only", action="store_true", help="export the latest stage-2 checkpoint to --export-to and exit"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtu.pretrain.train import export_run, pretrain_shapes

    if args.export_only:
        if not args.export_to:
            raise ValueError("--export-only needs --export-to DIR")
        print(f"exported to {export_run(args.out, args.export_to)}")
        return 0
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
        args.out, overrides, resume=args.resume, export_to=args.export_to, threads=args.threads,
        device=args.device, data_workers=args.data_workers, time_limit=args.time_limit,
    )
    print(json.dumps(summary))
    return 0
