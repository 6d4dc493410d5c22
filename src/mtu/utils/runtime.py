"""Process-wide CPU settings that make torch faster without changing what it computes.

`tune_allocator` keeps freed memory in the process. With glibc's defaults, every block over the mmap
threshold (128 KiB, raised dynamically up to 32 MiB) is mapped on allocation and unmapped on free, and
the heap's free top is trimmed back to the kernel: each denoiser forward gives its activations back and
the next one page-faults them in again, zeroed by the kernel (464,427 page faults per SD1.5 forward,
BENCHMARKS.md section 8; a process started with the equivalent `MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...` ran the forward in 0.82x the time). The same two settings are applied here
with `mallopt`, so this process needs no environment variable or re-exec; they are also exported for the
processes it starts. The cost: memory freed after a peak stays with the process (its resident size keeps
the peak, up to 2 GiB of free heap top); `MTU_NO_MALLOC_TUNING=1` opts out.

Standard library only: the sampling commands call it before torch is imported; training does not (measured:
a training step gains nothing, BENCHMARKS.md "PyTorch on CPU").
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

OPT_OUT = "MTU_NO_MALLOC_TUNING"
# mallopt parameters (malloc.h) and the environment variables glibc reads the same settings from at start.
# M_MMAP_MAX 0: large blocks come from the heap, not a mapping of their own (documented in mallopt(3)).
# M_TRIM_THRESHOLD: the heap's free top is given back only past 2 GiB (the largest value every glibc parses
# from the environment): a forward's activations are reused, an exceptional multi-GiB transient is not kept.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP = 2**31 - 1
SETTINGS = ((M_MMAP_MAX, 0, "MALLOC_MMAP_MAX_"), (M_TRIM_THRESHOLD, KEEP, "MALLOC_TRIM_THRESHOLD_"))
# A user who set any of these chose the allocator's policy (or another allocator) already: left alone.
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT, "").strip() not in ("", "0")


def _platform_reason() -> str | None:
    """Why this process's allocator cannot be tuned here (None: Linux with glibc)."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    return None if libc.startswith("glibc") else "the C library is not glibc"


def _environment_reason() -> str | None:
    """Why the environment says to leave the allocator alone (None: nothing chosen there)."""
    if _opted_out():
        return f"{OPT_OUT} is set"
    user = [name for name in USER_SETTINGS if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"set by the environment ({', '.join(user)})"
    other = [name for name in OTHER_ALLOCATORS if name in os.environ.get("LD_PRELOAD", "")]
    return f"another allocator is preloaded ({other[0]})" if other else None


def _inherited() -> bool:
    """Whether glibc read these settings from the environment at start (the child of a tuned process)."""
    return all(os.environ.get(name) == str(value) for _, value, name in SETTINGS)


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse (no per-forward page faults). Returns whether it is in effect.

    Applied with `mallopt` to this process, and exported as `MALLOC_MMAP_MAX_` / `MALLOC_TRIM_THRESHOLD_`
    so the processes it starts (multiprocessing spawn workers, subprocesses) start with it too. A no-op
    (False, the reason logged at debug level) off Linux / glibc, when `MTU_NO_MALLOC_TUNING` is set, or
    when the environment already chose a policy (`MALLOC_*_` variables, `GLIBC_TUNABLES`, a preloaded
    jemalloc / tcmalloc / mimalloc). Safe to call more than once.
    """
    reason = _platform_reason()
    if reason is None and not _opted_out() and _inherited():
        return True  # glibc applied them at start
    reason = reason or _environment_reason()
    if reason is None:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        failed = [parameter for parameter, value, _ in SETTINGS if mallopt(parameter, value) != 1]
        reason = f"mallopt refused parameter(s) {failed}" if failed else None
    if reason:
        logger.debug("glibc allocator left at its defaults: %s", reason)
        return False
    os.environ.update({name: str(value) for _, value, name in SETTINGS})
    logger.debug("glibc allocator: large blocks from the heap, no trimming below 2 GiB (freed memory is reused)")
    return True
