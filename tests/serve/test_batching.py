"""The batching worker: concurrent requests of different tasks share one `run_batch` call."""

from __future__ import annotations

import threading
import time

import numpy as np
import PIL.Image
import pytest
import torch

from mtu.pipelines import MTURequest
from mtu.serve import BatchWorker, RequestError, ServerBusy


class FakePipe:
    """Records `run_batch` calls; `check_inputs` sizes requests like the real pipeline (16x16 default)."""

    def __init__(self, delay: float = 0.0, fail_task: str | None = None):
        self.calls: list[list[str]] = []
        self.delay, self.fail_task = delay, fail_task
        self.started = threading.Event()

    def check_inputs(self, request):
        if request.task == "bogus":
            raise ValueError("unknown task 'bogus'")
        request.height, request.width = request.height or 16, request.width or 16
        return request

    def run_batch(self, requests, steps):
        self.calls.append([r.task for r in requests])
        self.started.set()
        time.sleep(self.delay)
        if any(r.task == self.fail_task for r in requests):
            raise RuntimeError("boom")
        return [[f"{r.task}:{r.prompt}"] for r in requests]


def _submit_together(worker, jobs):
    """Submit (request, steps) pairs from one thread each, released at the same moment."""
    barrier, futures = threading.Barrier(len(jobs)), [None] * len(jobs)

    def submit(index):
        barrier.wait()
        futures[index] = worker.submit(*jobs[index])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [future.result(timeout=30) for future in futures]


def test_requests_group_by_output_size_and_steps():
    pipe = FakePipe()
    with BatchWorker(pipe, max_batch=8, batch_wait_s=0.5) as worker:
        results = _submit_together(
            worker,
            [
                (MTURequest("t2i", "a"), 2),
                (MTURequest("edit", "b"), 2),
                (MTURequest("sr", "c", height=32, width=32), 2),
                (MTURequest("remove", "d"), 3),
            ],
        )
    assert [r.images for r in results] == [["t2i:a"], ["edit:b"], ["sr:c"], ["remove:d"]]
    assert sorted(map(sorted, pipe.calls)) == [["edit", "t2i"], ["remove"], ["sr"]]
    assert sorted(results[0].batch_tasks) == ["edit", "t2i"] and results[2].batch_tasks == ("sr",)


def test_max_batch_splits_the_queue():
    pipe = FakePipe()
    with BatchWorker(pipe, max_batch=2, batch_wait_s=0.5) as worker:
        _submit_together(worker, [(MTURequest("t2i", str(i)), 2) for i in range(4)])
    assert all(len(call) <= 2 for call in pipe.calls) and sum(map(len, pipe.calls)) == 4


def test_a_failing_request_fails_alone():
    pipe = FakePipe(fail_task="remove")
    with BatchWorker(pipe, max_batch=4, batch_wait_s=0.5) as worker:
        futures = [worker.submit(MTURequest(task, "x"), 2) for task in ("t2i", "remove", "edit")]
        assert futures[0].result(timeout=30).images == ["t2i:x"]
        assert futures[2].result(timeout=30).images == ["edit:x"]
        with pytest.raises(RuntimeError, match="boom"):
            futures[1].result(timeout=30)
        assert worker.submit(MTURequest("t2i", "after"), 2).result(timeout=30).images == ["t2i:after"]  # still serving


def test_bad_requests_are_refused_before_queueing():
    with BatchWorker(FakePipe()) as worker:
        with pytest.raises(RequestError, match="unknown task 'bogus'"):
            worker.submit(MTURequest("bogus"), 2)
    with pytest.raises(RuntimeError, match="not running"):
        BatchWorker(FakePipe()).submit(MTURequest("t2i"), 2)


def test_a_full_queue_refuses_and_cancelled_requests_are_skipped():
    pipe = FakePipe(delay=0.5)
    with BatchWorker(pipe, max_batch=1, batch_wait_s=0, max_queue=2) as worker:
        running = worker.submit(MTURequest("t2i", "first"), 2)
        assert pipe.started.wait(10)  # the worker holds "first"; the queue is empty again
        waiting = [worker.submit(MTURequest("t2i", str(i)), 2) for i in range(2)]
        with pytest.raises(ServerBusy, match="busy"):
            worker.submit(MTURequest("t2i", "one too many"), 2)
        assert waiting[0].cancel()  # as a timed-out request does
        assert running.result(timeout=30).images == ["t2i:first"]
        assert waiting[1].result(timeout=30).images == ["t2i:1"]
    assert pipe.calls == [["t2i"], ["t2i"]]  # the cancelled one never ran


def test_two_concurrent_tasks_share_one_run_batch_call_of_the_real_pipeline(tiny_pipe, monkeypatch):
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))

    def requests():
        return [
            MTURequest("t2i", "a red circle", generator=torch.Generator().manual_seed(1)),
            MTURequest("edit", "make it blue", image=image, generator=torch.Generator().manual_seed(2)),
        ]

    alone = [tiny_pipe.run_batch([request], 2, output_type="np")[0] for request in requests()]
    calls = []
    original = tiny_pipe.run_batch

    def spy(batch, steps):
        calls.append([request.task for request in batch])
        return original(batch, steps, output_type="np")

    monkeypatch.setattr(tiny_pipe, "run_batch", spy)
    with BatchWorker(tiny_pipe, max_batch=2, batch_wait_s=10) as worker:
        results = _submit_together(worker, [(request, 2) for request in requests()])
    assert len(calls) == 1 and sorted(calls[0]) == ["edit", "t2i"]
    for result, expected in zip(results, alone, strict=True):  # batched images equal the ones made alone
        np.testing.assert_allclose(result.images, expected, atol=1e-5)
