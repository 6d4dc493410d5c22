"""Loading the model the demo serves, and running the server."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mtu.assets import SHIPPED_MTU_NAME, shipped_mtu
from mtu.serve.limits import ServeLimits

TOKEN_VARIABLE = "MTU_SERVE_TOKEN"  # the token when `serve(token=...)` / `mtu serve --token` is not given


def load_pipeline(
    model: str | Path | None = None, base: str | Path | None = None, device: str | None = None, dtype: str | None = None
):
    """The `MTUPipeline` to serve, and a name to show for it.

    Args:
        model: anything `MTUPipeline.from_pretrained` loads: an MTU folder, an `mtu train` run's model/ (a
            lora / ia3 run serves one task per denoising loop), a base pipeline or shipped name (upcycled
            afresh: untrained, every task acts as the base model). None: the shipped Shapes MTU model when
            there is one, else `base` (default "shapes-base") upcycled afresh.
        base: the base pipeline of an MTU folder or run (default: the one its config names).
        device, dtype: where and in what precision it runs (`mtu.utils.devices`; default: cuda when available,
            float32).
    """
    from mtu.loading import inspect_model
    from mtu.utils.devices import load_pipeline as load_placed

    if model is None and shipped_mtu() is not None:
        model, base = SHIPPED_MTU_NAME, base or "shapes-base"
    elif model is None:
        model, base = base or "shapes-base", None
    source = inspect_model(model)
    name = f"{model} (upcycled, untrained)" if source.kind == "base" else str(model)
    return load_placed(model, base, device, dtype), name


def serve(
    model: str | Path | None = None,
    base: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    limits: ServeLimits | None = None,
    defaults=None,
    block: bool = True,
    device: str | None = None,
    dtype: str | None = None,
    token: str | None = None,
):
    """Load the model and serve the demo page at http://host:port, and beside it the HTTP API
    (`POST /v1/generate`, `mtu.serve.http_api`) on the same model and batching worker.

    Args:
        model, base: what to serve (see `load_pipeline`).
        host, port: where; 127.0.0.1 serves this machine only.
        limits: what the server accepts (`ServeLimits`).
        defaults: the page's initial `Settings` (default: the model's stored sampler settings, else the Shapes one).
        block: serve until interrupted; False returns at once with the server running in the background.
        device, dtype: where and in what precision the model runs (see `load_pipeline`).
        token: required by the API (`Authorization: Bearer <token>`) and the page (its log-in password);
            None: the `MTU_SERVE_TOKEN` variable, else no token (anyone who reaches the port may use it).

    Returns:
        (demo, service) when `block` is False (the server runs in a background thread; call
        `demo.close()` and `service.stop()` to end it); otherwise serves until Ctrl-C (or SIGTERM under
        `mtu.utils.signals.sigterm_as_interrupt`), then closes the server and returns None.
    """
    from mtu.serve.app import build_app, launch_options
    from mtu.serve.http_api import add_http_api
    from mtu.serve.service import ChatService

    token = token or os.environ.get(TOKEN_VARIABLE) or None

    pipe, name = load_pipeline(model, base, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    service = ChatService(pipe, limits).start()
    demo = build_app(service, name, defaults=defaults)
    try:
        demo.launch(**launch_options(service.limits, host, port, token), prevent_thread_lock=True)
        add_http_api(demo.app, service, token)  # routes are looked up per request: added once the app exists
        if not block:
            return demo, service
        while demo.is_running:  # gradio's block_thread would call a SIGTERM "Keyboard interruption"
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM under `sigterm_as_interrupt` (mtu serve): how serving ends
        if not block:
            _close(demo, service)
            raise
    except BaseException:
        _close(demo, service)
        raise
    _close(demo, service)


def _close(demo, service) -> None:
    demo.close(verbose=False)
    service.stop()
