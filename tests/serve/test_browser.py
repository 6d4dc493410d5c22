"""The demo page in a real browser: headless Chromium (Debian's) driven by Playwright, on loopback.

Runs a t2i request, an edit of its result, an inpainting of a painted area, an upscale, an upscale
of the first image (clicked in the conversation), and a bad upload, and checks that the images (and
the message) appear in the conversation. Saves a screenshot to $MTU_TEST_ARTIFACTS (default: the
test's tmp folder) and prints its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtu.serve import ServeLimits, Settings, serve
from tests.serve.conftest import free_port

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install 'mtu-diffusion[demo]'")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas deprecations

# Chromium on a machine with no network and no display: no sandbox (root), no GPU, no calls home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def _chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing and possible; skips the test otherwise."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "install", "-y", "-q", "chromium"],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "chromium"],
        ):
            subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)
            found = shutil.which("chromium")
            if found:
                break
    if found is None:
        pytest.skip(
            "Chromium is not installed and could not be installed here (needs root and apt-get): "
            "run `apt-get install -y chromium` to run the browser test"
        )
    return found


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a venv made before playwright joined the dev extra
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], check=True, timeout=600)
        from playwright.sync_api import sync_playwright
    return sync_playwright


@pytest.fixture(scope="module")
def server(tiny_mtu_folder):
    port = free_port()
    demo, service = serve(
        tiny_mtu_folder,
        port=port,
        limits=ServeLimits(max_side=256, timeout_s=60),
        defaults=Settings(steps=2),
        block=False,
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    service.stop()


@pytest.fixture
def page():
    executable = _chromium()
    with _playwright()() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 960})
        finally:
            browser.close()


def _send(page, text: str) -> None:
    box = page.locator("#request textarea")
    box.fill(text)
    box.press("Enter")


def _paint_stroke(page) -> None:
    """Brush a stroke across the middle of the current image (the inpainting mask)."""
    editor = page.locator("#current-image")
    editor.get_by_role("button", name="Brush", exact=True).click()
    box = editor.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 30, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 30, steps=10)
    page.mouse.up()


def _wait_for_images(page, count: int) -> None:
    """Until `count` images of the conversation have loaded (decoded, not broken)."""
    page.wait_for_function(
        "n => [...document.querySelectorAll('#chat img')].filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=count,
        timeout=TIMEOUT_MS,
    )


def test_requests_in_a_real_browser(server, page, tmp_path):
    page.goto(server)
    page.locator("#request textarea").wait_for(timeout=TIMEOUT_MS)

    _send(page, "a red circle at the top left, on a gray background")
    _wait_for_images(page, 1)
    _send(page, "make the red circle blue")  # works on the current image: the last result
    _wait_for_images(page, 2)
    _paint_stroke(page)
    _send(page, "fill the painted area with a green triangle")
    _wait_for_images(page, 3)
    _send(page, "upscale this")
    _wait_for_images(page, 4)
    page.locator("#chat img").first.click()  # the first result becomes the current image again
    page.keyboard.press("Escape")
    _send(page, "upscale this")  # 16 -> 64 px; the current image before the click would give 256 px
    _wait_for_images(page, 5)

    (tmp_path / "notes.png").write_text("not an image")
    page.locator("#request input[type=file]").set_input_files(tmp_path / "notes.png")
    _send(page, "make it green")
    page.get_by_text("notes.png is not an image").wait_for(timeout=TIMEOUT_MS)

    chat = page.locator("#chat").inner_text()
    for caption in ("t2i (guessed", "edit (guessed", "sr (guessed", "inpaint (guessed"):
        assert caption in chat
    sizes = page.evaluate("[...document.querySelectorAll('#chat img')].map(i => i.naturalWidth)")
    assert sizes == [16, 16, 16, 64, 64]  # the tiny model makes 16 px images, sr 4x that

    artifacts = Path(os.environ.get("MTU_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "serve-demo.png"
    # Unroll the conversation's scroll box so the screenshot shows every request.
    page.add_style_tag(
        content="#chat, #chat .wrapper, #chat .bubble-wrap "
        "{ height: auto !important; max-height: none !important; overflow: visible !important; }"
    )
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the demo page: {shot}")
