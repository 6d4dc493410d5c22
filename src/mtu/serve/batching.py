"""A batching worker: requests of many users, of any tasks, share denoising loops.

One thread owns the pipeline. It takes the first waiting request, waits up to `batch_wait_s` for more
(at most `max_batch` in all), groups them by what a loop must share (output size and step count, and the
task for a model whose per-task adapters switch the whole model: `MTUPipeline.mixes_tasks`), and runs
each group through `MTUPipeline.run_batch`: one denoiser call per step for every request of the group,
whatever their tasks. Each request's `Future` gets its own images.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from mtu.pipelines import MTURequest
from mtu.serve.limits import RequestError

logger = logging.getLogger(__name__)


class ServerBusy(RequestError):
    """The request queue is full."""


@dataclass(frozen=True)
class BatchResult:
    """What a request's future resolves to.

    Attributes:
        images: this request's images (as `run_batch` returns them).
        batch_tasks: the tasks of every request of the denoising loop that made them, in order.
        seconds: how long that loop took.
    """

    images: Any
    batch_tasks: tuple[str, ...]
    seconds: float


@dataclass
class _Job:
    request: MTURequest
    steps: int
    future: Future
    scheduler: str | None = None  # the scheduler its task is stored with (`MTUPipeline.scheduler_name`)

    def key(self, by_task: bool = False) -> tuple:
        """What requests must share to share a loop: (height, width, steps, scheduler), and the task if `by_task`."""
        task = self.request.task if by_task else None
        return self.request.height, self.request.width, self.steps, self.scheduler, task


_STOP = object()


class BatchWorker:
    """Serves `MTURequest`s from any threads through one pipeline, batching those that can share a loop.

    Args:
        pipe: an `MTUPipeline` (anything with `check_inputs(request)` and `run_batch(requests, steps)`).
        max_batch: most requests per denoising loop.
        batch_wait_s: how long to wait for more requests after the first.
        max_queue: most requests waiting at once; `submit` raises `ServerBusy` beyond it.

    Example:
        >>> with BatchWorker(pipe) as worker:
        ...     images = worker.submit(MTURequest("t2i", "a red circle"), steps=25).result().images
    """

    def __init__(self, pipe, max_batch: int = 4, batch_wait_s: float = 0.05, max_queue: int = 16):
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1, got {max_batch} and {max_queue}")
        self.pipe = pipe
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._by_task = not getattr(pipe, "mixes_tasks", True)  # lora / ia3: one task per loop

    def start(self) -> BatchWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="mtu-batch-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish the requests already taken, then end the thread (requests still queued are cancelled)."""
        if self._thread is None:
            return
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.future.cancel()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> BatchWorker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def submit(self, request: MTURequest, steps: int) -> Future:
        """Queue a request; returns a Future resolving to a `BatchResult`.

        Raises:
            RequestError: the pipeline refuses the request (checked here, before it waits in the queue).
            ServerBusy: the queue is full.
        """
        if self._thread is None:
            raise RuntimeError("the batch worker is not running: call start() first")
        try:
            request = self.pipe.check_inputs(request)  # fills in the output size that grouping needs
        except ValueError as error:
            raise RequestError(str(error)) from None
        scheduler_name = getattr(self.pipe, "scheduler_name", None)
        job = _Job(request, steps, Future(), scheduler_name(request.task) if scheduler_name else None)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ServerBusy(
                f"the server is busy ({self._queue.maxsize} requests waiting): try again in a moment"
            ) from None
        return job.future

    def _serve(self) -> None:
        running = True
        while running:
            jobs, running = self._collect()
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key(self._by_task), []).append(job)
            for group in groups.values():
                live = [job for job in group if job.future.set_running_or_notify_cancel()]  # skips timed-out ones
                if live:
                    self._execute(live)

    def _collect(self) -> tuple[list[_Job], bool]:
        """Up to `max_batch` jobs: the first one waited for, the rest arriving within `batch_wait_s`."""
        first = self._queue.get()
        if first is _STOP:
            return [], False
        jobs, deadline = [first], time.monotonic() + self.batch_wait_s
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, False
            jobs.append(job)
        return jobs, True

    def _execute(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            outputs = self.pipe.run_batch([job.request for job in jobs], jobs[0].steps)
            if len(outputs) != len(jobs):
                raise RuntimeError(f"run_batch returned {len(outputs)} results for {len(jobs)} requests")
        except Exception as error:  # noqa: BLE001 - a failing request must not take the worker down
            if len(jobs) > 1:  # find the culprit: the others still get their images
                for job in jobs:
                    self._execute([job])
                return
            logger.exception("request failed: %s", jobs[0].request.task)
            jobs[0].future.set_exception(error)
            return
        seconds = time.perf_counter() - start
        tasks = tuple(job.request.task for job in jobs)
        height, width, steps, *_ = jobs[0].key()
        logger.info(
            "ran %d request(s) %s at %dx%d, %d steps, in %.2f s", len(jobs), tasks, width, height, steps, seconds
        )
        for job, images in zip(jobs, outputs, strict=True):
            job.future.set_result(BatchResult(images, tasks, seconds))
