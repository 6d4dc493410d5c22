"""Loading the model the demo serves, and running the server."""

from __future__ import annotations

from pathlib import Path

from mtu.assets import SHIPPED_MTU_NAME, shipped_mtu
from mtu.serve.limits import ServeLimits


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
        device, dtype: where and in what precision it runs (`mtu.devices`; default: cuda when available,
            float32).
    """
    from mtu.devices import load_pipeline as load_placed
    from mtu.loading import inspect_model

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
):
    """Load the model and serve the demo page at http://host:port.

    Args:
        model, base: what to serve (see `load_pipeline`).
        host, port: where; 127.0.0.1 serves this machine only.
        limits: what the server accepts (`ServeLimits`).
        defaults: the page's initial `Settings` (default: the model's stored sampler settings, else the Shapes one).
        block: serve until interrupted; False returns at once with the server running in the background.
        device, dtype: where and in what precision the model runs (see `load_pipeline`).

    Returns:
        (demo, service) when `block` is False (the server runs in a background thread; call
        `demo.close()` and `service.stop()` to end it); blocks until interrupted otherwise.
    """
    from mtu.serve.app import build_app, launch_options
    from mtu.serve.service import ChatService

    pipe, name = load_pipeline(model, base, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    service = ChatService(pipe, limits).start()
    demo = build_app(service, name, defaults=defaults)
    try:
        demo.launch(**launch_options(service.limits, host, port), prevent_thread_lock=not block)
    except BaseException:
        service.stop()
        raise
    if not block:
        return demo, service
    service.stop()
