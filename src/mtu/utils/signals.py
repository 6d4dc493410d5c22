"""Stop long jobs cleanly: SIGINT / SIGTERM become a flag the loop checks between steps, so it checkpoints first;
for short jobs, SIGTERM ends the job as Ctrl-C does (`sigterm_as_interrupt`)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class StopRequest:
    """SIGINT / SIGTERM set a flag the loop checks after each optimizer step (then checkpoints and exits).

    A second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nreceived signal {signum}: checkpointing after this step", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be: the same clean-up runs (temp files removed, one
    line printed by `mtu`), and the exit status is 128 + 15, as a shell reports a process SIGTERM ended."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (outside it: nothing changes).

    Without it SIGTERM ends the process where it stands: no line for the user, and a file being written is
    left half-written. OpenVINO and onnxruntime calls run to their end first (Python handles signals between
    bytecodes), so the exception comes after the current network call.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
