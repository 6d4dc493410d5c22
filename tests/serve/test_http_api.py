"""The typed HTTP API (`POST /v1/generate`) of a started `mtu serve`, called over loopback with a real client."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import PIL.Image
import pytest

from mtu.serve import ServeLimits, serve
from tests.helpers import box_mask, picture
from tests.serve.conftest import free_port

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def url(tiny_mtu_folder):
    port = free_port()
    limits = ServeLimits(max_side=64, max_bytes=32 * 1024, timeout_s=60, max_batch=4)
    demo, service = serve(tiny_mtu_folder, port=port, limits=limits, token=TOKEN, block=False)
    yield f"http://127.0.0.1:{port}"
    demo.close()
    service.stop()


def _png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(image: PIL.Image.Image) -> str:
    return base64.b64encode(_png(image)).decode()


def _request(task: str, seed: int) -> dict:
    inputs = {
        "t2i": {"prompt": "a red circle"},
        "edit": {"prompt": "make it blue", "image": _b64(picture(1))},
        "sr": {"prompt": "", "image": _b64(picture(2, size=4))},
        "inpaint": {"prompt": "a red circle", "image": _b64(picture(4)), "mask": _b64(box_mask())},
    }[task]
    return {"task": task, "seed": seed, "steps": 2, **inputs}


def _image(response: httpx.Response) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(response.json()["image"]))), dtype=np.int16)


def test_json_and_form_requests_return_the_image_as_json_or_png(url):
    response = httpx.post(f"{url}/v1/generate", json=_request("t2i", 0), headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["task"], body["seed"], body["steps"]) == ("t2i", 0, 2) and _image(response).shape == (16, 16, 3)
    form = {"task": "edit", "prompt": "make it blue", "seed": "0", "steps": "2"}
    files = {"image": ("in.png", _png(picture(1)), "image/png")}
    png = httpx.post(f"{url}/v1/generate", data=form, files=files, headers={**AUTH, "Accept": "image/png"}, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    as_json = httpx.post(f"{url}/v1/generate", json=_request("edit", 0), headers=AUTH, timeout=60)
    assert np.abs(np.asarray(PIL.Image.open(io.BytesIO(png.content)), dtype=np.int16) - _image(as_json)).max() <= 1
    schema = httpx.get(f"{url}/v1/openapi.json", timeout=10).json()
    assert set(schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"task": "depth"}, 400, "unknown task 'depth'; this model serves"),
        ({"task": "edit", "image": None}, 400, "edit works on an image: attach one"),
        ({"image": "not base64!"}, 400, "image is not valid base64"),
        ({"image": _b64(PIL.Image.new("RGB", (128, 128)))}, 400, "the limit is 64 pixels a side"),
        ({"image": _b64(picture(0, size=128).resize((60, 60)).resize((64, 64)))}, 400, None),  # within limits
        ({"steps": "many"}, 400, "steps: Input should be a valid integer"),
        ({"colour": "red"}, 400, "colour: Extra inputs are not permitted"),
        ({"image": "A" * 200_000}, 413, "the limit is"),
        ({"headers": {}}, 401, "missing or wrong token"),
    ],
)
def test_bad_input_is_a_4xx_with_one_line_and_the_server_keeps_serving(url, change, status, message):
    headers = change.pop("headers", AUTH)
    body = {**_request("edit", 0), **change}
    response = httpx.post(f"{url}/v1/generate", json=body, headers=headers, timeout=60)
    if message is None:  # a fine image: it runs
        assert response.status_code == 200
        return
    assert response.status_code == status and message in response.json()["error"], response.text
    assert len(response.json()["error"].splitlines()) == 1
    assert httpx.post(f"{url}/v1/generate", json=_request("t2i", 1), headers=AUTH, timeout=60).status_code == 200


def test_the_page_needs_the_token_too(url):
    assert httpx.get(f"{url}/config", timeout=10).status_code == 401
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/login", data={"username": "anyone", "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": "anyone", "password": TOKEN}).status_code == 200
        assert client.get("/config").status_code == 200


def test_mixed_tasks_from_several_clients_each_get_their_own_image(url):
    """A bounded load: 16 requests over 4 tasks from 4 clients; nothing lost, nothing mixed up."""
    jobs = [(task, seed) for seed in range(4) for task in ("t2i", "edit", "sr", "inpaint")]
    alone = {
        job: _image(httpx.post(f"{url}/v1/generate", json=_request(*job), headers=AUTH, timeout=60)) for job in jobs
    }

    def call(job):
        start = time.perf_counter()
        response = httpx.post(f"{url}/v1/generate", json=_request(*job), headers=AUTH, timeout=120)
        return job, response, time.perf_counter() - start

    with ThreadPoolExecutor(4) as clients:
        results = list(clients.map(call, jobs))
    assert all(response.status_code == 200 for _, response, _ in results)
    shared = [r.json()["batch_tasks"] for _, r, _ in results]
    assert any(len(set(tasks)) > 1 for tasks in shared)  # tasks really shared denoising loops
    for job, response, _ in results:
        assert response.json()["task"] == job[0]
        assert np.abs(_image(response) - alone[job]).max() <= 1, job  # its own image, batched or not
