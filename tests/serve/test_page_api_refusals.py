"""Bad input sent to the demo page's own (gradio) API of a started `mtu serve`: one line for the caller, one line
in the server log, no traceback (issue 31: gradio printed a full traceback for each of its validation errors)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install 'mtu-diffusion[demo]'")
from mtu.serve import ServeLimits, serve  # noqa: E402
from tests.serve.conftest import free_port  # noqa: E402

MESSAGE = {"text": "a red circle", "files": []}
GOOD = [MESSAGE, [], None, "auto", 2, 1.0, 1.5, 0, False]  # respond's inputs: message, conversation, image, controls
NOT_UPLOADED = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}


@pytest.fixture(scope="module")
def api(tiny_mtu_folder):
    port = free_port()
    limits = ServeLimits(max_side=64, max_bytes=32 * 1024, timeout_s=60)
    demo, service = serve(tiny_mtu_folder, port=port, limits=limits, block=False)
    yield f"http://127.0.0.1:{port}/gradio_api"
    demo.close()
    service.stop()


def _call(api: str, data: list, name: str = "respond") -> tuple[int, str, dict | None]:
    """One call through gradio's HTTP API: (status of the call, the event's kind, its data)."""
    response = httpx.post(f"{api}/call/{name}", json={"data": data}, timeout=60)
    if response.status_code != 200:
        return response.status_code, "", response.json()
    stream = httpx.get(f"{api}/call/{name}/{response.json()['event_id']}", timeout=60).text
    events = [line.removeprefix("event: ") for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    return 200, events[-1], json.loads(payloads[-1]) if payloads[-1] != "null" else None


def _with(index: int, value) -> list:
    data = list(GOOD)
    data[index] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (_with(4, 10_000), "Steps must be between 1 and 100, got 10000"),  # out of the slider's range
        (_with(4, "many"), "Steps: expected a number, got 'many'"),
        (_with(5, -3), "Text guidance (off at 1) must be between 0 and 15, got -3"),
        (_with(3, "depth"), "Task: 'depth' is not one of auto, t2i, edit, sr, remove, inpaint"),
        (_with(8, "yes"), "expected true or false, got 'yes'"),
        (_with(0, "hello"), "MultimodalData: value: Input should be a valid dictionary"),
        (_with(1, "garbage"), "Input should be a valid list"),
        (_with(0, {"text": "x", "files": [NOT_UPLOADED]}), "because it was not uploaded by a user"),
        (GOOD[:3], "this event takes 9 input values"),
    ],
)
def test_gradio_refusals_are_one_line_for_the_caller_and_the_log(api, data, message, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="mtu.serve.app"):
        status, event, payload = _call(api, data)
    assert (status, event) == (200, "error") and message in payload["error"], payload
    assert len(payload["error"].splitlines()) == 1
    refusals = [r for r in caplog.records if r.name == "mtu.serve.app"]
    assert len(refusals) == 1 and message in refusals[0].getMessage() and refusals[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err
    assert _call(api, GOOD)[:2] == (200, "complete")  # and the page keeps serving


def test_calls_that_name_no_event_and_oversized_uploads_are_4xx_without_traceback(api, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="mtu.serve.app"):
        status, _, payload = _call(api, GOOD, name="nope")
        assert status == 404 and "API name: nope; this page's API names:" in payload["error"]
        assert "/respond" in payload["error"]
        join = httpx.post(f"{api}/queue/join", json={"data": GOOD, "fn_index": 999, "session_hash": "x"}, timeout=30)
        assert join.status_code == 404 and join.json() == {"error": "no event with index 999"}
        upload = httpx.post(f"{api}/upload", files={"files": ("big.png", b"x" * 40_000, "image/png")}, timeout=30)
        assert upload.status_code == 413
    assert len([r for r in caplog.records if r.name == "mtu.serve.app"]) == 2
    assert "Traceback" not in capfd.readouterr().err
    assert _call(api, GOOD)[:2] == (200, "complete")
