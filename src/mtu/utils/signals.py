"""Stop long jobs cleanly: SIGINT / SIGTERM become a flag the loop checks between steps, so it checkpoints first."""

from __future__ import annotations

import signal
import sys
import threading


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
