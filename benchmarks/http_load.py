"""A bounded load test of `mtu serve`'s HTTP API: mixed-task requests from several clients at once.

    python -m benchmarks.http_load [--model shapes-mtu] [--requests 50] [--clients 8]

Starts the server on a free loopback port, runs each distinct request once alone (the reference image), then
sends all of them from `--clients` threads at once, round-robin over t2i, edit, sr and inpaint on the shipped
example inputs (`mtu.examples`), each with its own seed. Prints latency percentiles, failures, and how many
responses differ from their request's reference image (mixed up) by more than one grey level.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import PIL.Image

from benchmarks.report import Section, Table, Target
from mtu.examples import example_inputs
from mtu.serve import serve

TASKS = ("t2i", "edit", "sr", "inpaint")


def _body(task: str, seed: int) -> dict:
    example = example_inputs(task)
    body = {"task": task, "prompt": example["prompt"], "seed": seed}
    for field in ("image", "mask"):
        if example[field] is not None:
            body[field] = base64.b64encode(example[field].read_bytes()).decode()
    return body


def _pixels(response: httpx.Response) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(response.json()["image"]))), dtype=np.int16)


def run(model: str, requests: int, clients: int) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo, service = serve(model, port=port, block=False)
    url = f"http://127.0.0.1:{port}/v1/generate"
    try:
        jobs = [(TASKS[i % len(TASKS)], i) for i in range(requests)]
        alone = {job: _pixels(httpx.post(url, json=_body(*job), timeout=600)) for job in jobs}

        def call(job):
            start = time.perf_counter()
            try:
                response = httpx.post(url, json=_body(*job), timeout=600)
            except httpx.HTTPError as error:
                return job, None, time.perf_counter() - start, str(error)
            return job, response, time.perf_counter() - start, None

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(call, jobs))
        wall = time.perf_counter() - start
    finally:
        demo.close()
        service.stop()
    ok = [(job, r, s) for job, r, s, e in results if r is not None and r.status_code == 200]
    latencies = np.array([s for _, _, s in ok])
    mixed = sum(np.abs(_pixels(r) - alone[job]).max() > 1 or r.json()["task"] != job[0] for job, r, _ in ok)
    shared = [len(r.json()["batch_tasks"]) for _, r, _ in ok]
    return {
        "model": model,
        "requests": requests,
        "clients": clients,
        "failures": requests - len(ok),
        "mixed_up": int(mixed),
        "wall_s": round(wall, 2),
        "latency_s": {f"p{q}": round(float(np.percentile(latencies, q)), 2) for q in (50, 90, 99)},
        "max_latency_s": round(float(latencies.max()), 2),
        "mean_requests_per_loop": round(float(np.mean(shared)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-mtu")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(args.model, args.requests, args.clients), indent=1))


if __name__ == "__main__":
    main()


def section(settings) -> Section:
    """BENCHMARKS.md's section: the load test on the shipped model (issue 28: nothing lost or mixed up)."""
    requests, clients = (8, 4) if settings.quick else (50, 8)
    found = run(settings.model or "shapes-mtu", requests, clients)
    latency = found["latency_s"]
    table = Table(
        ["model", "requests (t2i, edit, sr, inpaint)", "clients", "p50 s", "p90 s", "p99 s", "max s", "wall s",
         "requests per denoising loop", "failures", "mixed up"],
        [[found["model"], found["requests"], found["clients"], latency["p50"], latency["p90"], latency["p99"],
          found["max_latency_s"], found["wall_s"], found["mean_requests_per_loop"], found["failures"],
          found["mixed_up"]]],
    )  # fmt: skip
    return Section(
        key="http",
        title="HTTP API under load (`mtu serve`, POST /v1/generate)",
        method=(
            "`python -m benchmarks.http_load`: the server on a loopback port, each distinct request run once alone "
            "(its reference image), then all of them from several client threads at once, round-robin over four "
            "tasks on the shipped example inputs, each with its own seed. Latency is per request, wall-clock, "
            "queueing included; 'mixed up' counts responses that differ from their own request's reference image "
            "by more than one grey level or carry another task."
        ),
        tables=[table],
        targets=[
            Target("failed requests", found["failures"], "<=", 0),
            Target("responses mixed up", found["mixed_up"], "<=", 0),
        ],
    )
