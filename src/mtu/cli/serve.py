"""`mtu serve`: a web demo, one chat page for every task of an MTU model, and a typed HTTP API beside it
(`POST /v1/generate`, schema at /v1/openapi.json; `mtu.serve.http_api`)."""

from __future__ import annotations

import argparse
import sys

from mtu.utils.devices import add_options, check_placement
from mtu.utils.limits import MAX_IMAGES, MAX_PORT, MAX_STEPS, WAIT_S


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a chat-style web demo of every task of an MTU model")
    parser.add_argument(
        "--model",
        default=None,
        help="an MTU folder, an `mtu train` run's model/ (any method), a base pipeline (upcycled afresh) or a "
        "shipped name or a hub id (org/name) (default: the shipped Shapes MTU model, else shapes-base upcycled afresh)",
    )
    parser.add_argument("--base", default=None, help="base pipeline of an MTU folder (default: the one it names)")
    add_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help=f"port, 1-{MAX_PORT} (default 7860)")
    parser.add_argument(
        "--max-batch", type=int, default=4, help=f"most requests per denoising loop, 1-{MAX_IMAGES} (default 4)"
    )
    parser.add_argument(
        "--max-queue", type=int, default=16, help="most waiting requests, >= 1; more are refused (default 16)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=100,
        help=f"most denoising steps a request may ask for, 1-{MAX_STEPS} (default 100)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help=f"seconds a request may wait for its result, up to {WAIT_S[1]:g}"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require this bearer token on the HTTP API (POST /v1/generate) and as the page's log-in password "
        "(default: the MTU_SERVE_TOKEN variable, which keeps it out of the process list; unset: no token)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from mtu.utils.limits import check_count, check_number

    # before anything loads: --port 99999 was an OverflowError, --max-steps 100000 started a server
    check_count("--port", args.port, MAX_PORT)
    check_count("--max-steps", args.max_steps, MAX_STEPS)
    check_count("--max-batch", args.max_batch, MAX_IMAGES)
    check_count("--max-queue", args.max_queue)
    check_number("--timeout", args.timeout, *WAIT_S)
    try:
        from mtu.serve import ServeLimits, serve
    except ImportError as error:
        raise RuntimeError(f"mtu serve needs the demo extra ({error}): pip install 'mtu-diffusion[demo]'") from None

    from mtu.utils.signals import sigterm_as_interrupt

    check_placement(args.device, args.dtype)  # before the model loads
    limits = ServeLimits(
        max_steps=args.max_steps, timeout_s=args.timeout, max_queue=args.max_queue, max_batch=args.max_batch
    )
    placement = {"device": args.device, "dtype": args.dtype}
    # SIGTERM (systemd, docker stop, kill) stops the server as Ctrl-C does: closed, one line, exit 0; while the
    # model loads it is an interrupt like any command's (one line, exit 143).
    with sigterm_as_interrupt():
        serve(args.model, args.base, host=args.host, port=args.port, limits=limits, token=args.token, **placement)
    print("mtu serve: stopped", file=sys.stderr)
