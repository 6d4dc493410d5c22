"""What the demo server accepts, and the error it answers with otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtu.utils.limits import MAX_STEPS, WAIT_S, check_count, check_number
from mtu.utils.limits import max_side as library_max_side


class RequestError(ValueError):
    """A request the server refuses; its message is shown to the user in the conversation."""


@dataclass(frozen=True)
class ServeLimits:
    """Limits that keep one server responsive for everyone.

    Args:
        max_side: largest accepted upload side in pixels; larger uploads are refused (default: the library's
            `mtu.utils.limits.max_side()`, 1024 unless MTU_MAX_SIDE is set, which the pipeline enforces anyway).
        max_bytes: largest accepted upload file in bytes.
        max_steps: most denoising steps a request may ask for.
        timeout_s: seconds a request may wait for its result (queue + compute) before it is given up.
        max_queue: requests waiting for the model at once; more are refused with a "busy" message.
        max_batch: most requests run together in one denoising loop.
        batch_wait_s: how long the worker waits for more requests after the first one, to batch them.
    """

    max_side: int = field(default_factory=library_max_side)
    max_bytes: int = 4 * 1024 * 1024
    max_steps: int = 100
    timeout_s: float = 300.0
    max_queue: int = 16
    max_batch: int = 4
    batch_wait_s: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_side", "max_bytes", "max_queue", "max_batch"):
            check_count(f"ServeLimits.{name}", getattr(self, name))
        check_count("ServeLimits.max_steps", self.max_steps, MAX_STEPS)  # no request could use more
        check_number("ServeLimits.timeout_s", self.timeout_s, *WAIT_S)
        check_number("ServeLimits.batch_wait_s", self.batch_wait_s, 0, WAIT_S[1])
