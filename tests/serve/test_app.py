"""The page's callbacks as plain functions (no browser), and the `mtu serve` command line."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from mtu.cli.main import main
from mtu.serve import ChatService, ServeLimits

gr = pytest.importorskip("gradio", reason="the demo extra is not installed: pip install 'mtu-diffusion[demo]'")
from mtu.serve.app import ChatApp, build_app  # noqa: E402


@pytest.fixture(scope="module")
def app(tiny_pipe):
    service = ChatService(tiny_pipe, ServeLimits(max_side=64, timeout_s=60)).start()
    yield ChatApp(service)
    service.stop()


def _respond(app, text, files=(), editor=None, task="auto", history=(), settings=(2, 1.0, 1.5, 0)):
    """Run the chat callback to its end as gradio does; returns (history shown first, final outputs).

    Result images are read while the callback is paused at its last answer (it deletes its copy after).
    """
    steps = []
    for outputs in app.respond({"text": text, "files": list(files)}, list(history), editor, task, *settings):
        content = outputs[0][-1]["content"]
        if isinstance(content, list):
            picture = content[0]
            picture["size"] = PIL.Image.open(picture["path"]).size
        steps.append(outputs)
    return steps[0][0], steps[-1]


def test_a_request_shows_at_once_then_its_image_becomes_the_current_image(app):
    first, (history, _, editor) = _respond(app, "a red circle")
    assert first[-1] == {"role": "assistant", "content": "working…"}
    assert [m["role"] for m in history] == ["user", "assistant"]
    picture, caption = history[1]["content"]
    assert picture["size"] == (16, 16) and not Path(picture["path"]).exists()  # gradio has its own copy by then
    assert caption.startswith("**t2i** (guessed") and "2 steps" in caption and "seed 0" in caption
    assert editor["background"].size == (16, 16) and editor["layers"] == []

    _, (history, _, _) = _respond(app, "make it blue", editor=editor, history=history)
    assert history[-1]["content"][1].startswith("**edit** (guessed")


def test_a_painted_mask_means_inpaint(app):
    layer = PIL.Image.new("RGBA", (16, 16))
    layer.paste((255, 0, 255, 255), (4, 4, 10, 10))
    editor = {"background": PIL.Image.new("RGBA", (16, 16), (0, 0, 0, 255)), "layers": [layer], "composite": None}
    _, (history, _, _) = _respond(app, "a green triangle", editor=editor)
    assert history[-1]["content"][1].startswith("**inpaint** (guessed")


def test_bad_uploads_and_requests_get_a_message_in_the_chat(app, tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    PIL.Image.new("RGB", (65, 8)).save(tmp_path / "wide.png")
    cases = [
        ("make it blue", [tmp_path / "notes.png"], (2, 1.0, 1.5, 0), "notes.png is not an image"),
        ("make it blue", [tmp_path / "wide.png"], (2, 1.0, 1.5, 0), "65x8 pixels; the limit is 64"),
        ("remove the circle", [], (2, 1.0, 1.5, 0), "remove works on an image"),
        ("", [], (2, 1.0, 1.5, 0), "type a request"),
        ("a circle", [], (None, 1.0, 1.5, 0), "settings must be numbers, got steps=None"),
    ]
    for text, files, settings, message in cases:
        _, (history, box, editor) = _respond(app, text, files=[str(f) for f in files], settings=settings)
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[-1]["content"].startswith("Could not run this: ")
        assert message in history[-1]["content"]
        assert isinstance(editor, type(gr.skip()))  # the current image is left alone
    assert history[0]["content"] == "a circle"
    _, (history, _, _) = _respond(app, "make it blue", files=[str(tmp_path / "notes.png")])
    assert history[0]["content"] == "make it blue\n\n(attached: notes.png)"  # named, not shown as a broken image


def test_a_failing_model_is_a_message_not_a_crash(app, monkeypatch):
    monkeypatch.setattr(app.service, "run", lambda *args: 1 / 0)
    _, (history, _, _) = _respond(app, "a circle")
    assert history[-1]["content"].startswith("Could not run this: the model failed on it (ZeroDivisionError)")


def test_an_attachment_is_shown_and_used(app, tmp_path):
    rgba = np.zeros((20, 10, 4), np.uint8)
    PIL.Image.fromarray(rgba).save(tmp_path / "clear.png")
    _, (history, _, editor) = _respond(app, "make it blue", files=[str(tmp_path / "clear.png")])
    assert history[0]["content"][1] == {"path": str(tmp_path / "clear.png")}
    assert editor["background"].size == (8, 16)  # 10x20 fit into the model's 16 px


def test_clicking_an_image_of_the_conversation_makes_it_current(app, tmp_path):
    PIL.Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "old.png")
    (tmp_path / "notes.txt").write_text("hello")
    history = [
        {"role": "user", "content": [{"type": "text", "text": "a circle"}]},
        {"role": "assistant", "content": [{"type": "file", "file": {"path": str(tmp_path / "old.png")}}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": str(tmp_path / "notes.txt")}}]},
    ]

    def click(index, value=None):
        return app.select_image(history, types.SimpleNamespace(index=index, value=value))

    assert click(1)["background"].getpixel((0, 0)) == (1, 2, 3)
    skip = type(gr.skip())
    assert isinstance(click(0), skip) and isinstance(click(2), skip) and isinstance(click(7), skip)
    assert isinstance(click(0, value={"path": "/etc/passwd"}), skip)  # the browser's value is never trusted


def test_the_page_builds(app):
    demo = build_app(app.service, "tiny")
    assert isinstance(demo, gr.Blocks)


def test_cli_serve_passes_typed_arguments(monkeypatch, tmp_path):
    import mtu.serve

    seen = {}
    monkeypatch.setattr(mtu.serve, "serve", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    argv = ["serve", "--model", str(tmp_path), "--port", "7999", "--max-batch", "2", "--timeout", "9"]
    assert main(argv) == 0
    assert seen["args"] == (str(tmp_path), None)  # a folder or a shipped name
    assert seen["kwargs"]["host"] == "127.0.0.1" and seen["kwargs"]["port"] == 7999
    assert seen["kwargs"]["limits"] == ServeLimits(max_batch=2, timeout_s=9.0)
