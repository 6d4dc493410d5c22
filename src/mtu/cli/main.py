"""The `mtu` command line: a thin layer over the Python API.

Each sub-command lives in its own module under `mtu.cli` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a function taking the parsed arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mtu.utils.limits import setting_range

# Errors whose message says what went wrong by itself (refusals, missing files, bad settings).
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)
# Commands that give their workers threads themselves (reproduce: cores / jobs; pretrain-shapes: 1).
OWN_THREADS = {"reproduce", "pretrain-shapes"}
# Commands that only sample get glibc's keep-freed-memory setting (mtu.utils.runtime): an SD1.5 forward took 0.94x
# the time with it; a training step took 1.07x (BENCHMARKS.md "PyTorch on CPU"), so training keeps the default.
TUNED_ALLOCATOR = {"generate", "serve", "eval", "info", "export", "demo"}
# Sub-command modules, in the order `mtu --help` lists them. Each imports only the standard library (and
# light mtu modules) at the top, so `mtu --help` and argument errors return without loading torch.
COMMAND_MODULES = [
    "quickstart",
    "demo",
    "upcycle",
    "add_task",
    "generate",
    "export",
    "info",
    "eval",
    "pretrain_shapes",
    "train",
    "reproduce",
    "serve",
]


# transformers >= 5 warns, when diffusers resolves a pipeline's component classes, that its image processors
# fall back to the PIL backend without torchvision. mtu never runs those processors (no safety checker), and
# torchvision is not a dependency: two lines of noise on every command that loads a pipeline. Only that message
# is dropped; transformers' other warnings stay (set_verbosity_error would hide them all).
TORCHVISION_FALLBACK = "requires torchvision (not installed); falling back to"


class DropTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return TORCHVISION_FALLBACK not in record.getMessage()


def quiet_known_noise() -> None:
    """Drop the torchvision-fallback warning at its source logger; idempotent (main may run twice in-process)."""
    source = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, DropTorchvisionFallback) for f in source.filters):
        source.addFilter(DropTorchvisionFallback())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtu", description="Multi-Task Upcycling for diffusion models.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    parser.add_argument(
        "--threads",
        type=int,
        dest="global_threads",
        metavar="N",
        help=f"torch CPU threads, {setting_range('threads')} (default: the cores free at start: beside one busy "
        "process a training step then took 1.47x its time alone, against 3.3x with every core, BENCHMARKS.md "
        "section 10; OMP_NUM_THREADS also sets it)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"mtu.cli.{name}").register(subparsers)
    return parser


def check_device(device: str | None) -> None:
    """Refuse a --device this machine does not have, in one line, before any model loads."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
        raise ValueError(
            f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}, {build}); "
            "use --device cpu"
        )
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu")


# What to do about an operating-system error, by errno name; the message names the path.
OS_FIXES = {
    "EACCES": "check its permissions, or choose another path",
    "EPERM": "check its permissions, or choose another path",
    "EROFS": "it is on a read-only file system: choose another path",
    "ENOSPC": "the disk is full: free space or choose another disk",
    "EDQUOT": "the disk quota is used up: free space or choose another disk",
    "ENOTDIR": "a part of the path is a file, not a folder: choose another path",
    "EISDIR": "it is a folder where a file is needed: choose another path",
    "EEXIST": "it already exists: choose another path or remove it",
    "ENOENT": "it does not exist: check the path",
    "ENAMETOOLONG": "the name is too long: choose a shorter path",
    "ELOOP": "it is a loop of symlinks: fix the link",
}
# What Ctrl-C leaves, by command: the others write whole outputs at the end (mtu.utils.outputs), so nothing.
INTERRUPTED = {
    "train": "checkpoints already written are kept: --resume latest continues",
    "quickstart": "the training checkpoints already written are kept: the same command continues",
    "reproduce": "finished runs and checkpoints are kept: the same command continues",
    "pretrain-shapes": "checkpoints already written are kept: the same command continues",
    "generate": "only the PNGs listed above were written",
}


def describe(error: Exception) -> str:
    """One line for the user: the message of an expected error; type and message of anything else."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        import errno

        fix = OS_FIXES.get(errno.errorcode.get(error.errno or 0, ""), "check the path")
        return f"{error.filename}: {error.strerror.lower()}; {fix}"
    if isinstance(error, EXPECTED_ERRORS):
        return str(error)
    return f"{type(error).__name__}: {error} (unexpected; --debug shows the traceback)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_known_noise()
    try:
        if args.command in TUNED_ALLOCATOR:
            from mtu.utils.runtime import tune_allocator

            tune_allocator()  # before any model loads: glibc keeps activations for the next forward
        check_device(getattr(args, "device", None))
        from mtu.utils.limits import check_settings

        for given in (args.global_threads, getattr(args, "threads", None)):
            check_settings(threads=given)  # 0 used to mean "the default" without a word
        threads = getattr(args, "threads", None)
        threads = args.global_threads if threads is None else threads
        if args.command not in OWN_THREADS:
            from mtu.utils.threads import configure_threads

            configure_threads(threads)
        result = args.func(args)
    except KeyboardInterrupt as interrupt:
        if args.debug:
            raise
        kept = INTERRUPTED.get(args.command, "nothing written")
        print(f"\nmtu {args.command}: interrupted; {kept}", file=sys.stderr)
        # 128 + the signal, as a shell reports a process it ended: 130 Ctrl-C, 143 SIGTERM (mtu.utils.signals)
        return 128 + int(getattr(interrupt, "signum", 2))
    except Exception as error:  # a traceback helps no user; --debug shows it for reports
        if args.debug:
            raise
        # stderr escapes what it cannot encode (a prompt with undecodable bytes) instead of failing here
        print(f"mtu {args.command}: error: {describe(error)}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
