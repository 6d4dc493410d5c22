"""The demo page: one conversation for every task of one MTU model (gradio)."""

from __future__ import annotations

import logging
import numbers
import secrets
import tempfile
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import PIL.Image

from mtu.serve.limits import RequestError, ServeLimits
from mtu.serve.service import AUTO, ChatService, Reply, Settings
from mtu.serve.uploads import load_upload, mask_from_layers
from mtu.utils.limits import shown

logger = logging.getLogger(__name__)

# Requests that the Shapes model knows, in the order a newcomer would try them.
SHAPES_EXAMPLES = [
    "a red circle at the top left, on a gray background",
    "make the red circle blue",
    "a blue square at the center and a yellow triangle on the right, on a white background",
    "remove the blue square",
    "upscale this",  # shown with the shipped 16x16 example attached: sr was trained on 16 -> 64 (`_example_files`)
    "fill the painted area with a green triangle",
]

# Small models make small pictures: show them at a readable size, with crisp pixels.
CSS = "#chat img { width: 192px; height: auto; object-fit: contain; image-rendering: pixelated; }"

TASK_LABELS = {
    "t2i": "t2i: a new picture from the caption",
    "edit": "edit: change the current image",
    "sr": "sr: upscale the current image 4x",
    "remove": "remove: take an object out",
    "inpaint": "inpaint: fill the painted area",
    "colorize": "colorize: colour a grayscale image",
}

_INTRO = """\
### mtu: one model, every task
Type a caption for a new picture, or an instruction for the current one ("make the red circle blue",
"remove the blue square", "upscale this"). Attach an image with the clip, or keep working on the last
result: it becomes the **current image** on the right. To inpaint, paint over the area to fill.
The task is guessed from your words; pick one below to override. Model: `{model}`; tasks: {tasks}."""


def _example_files(text: str, service: ChatService) -> list[str]:
    """The input an example request needs at the size its task was trained on: a task that scales its image up
    (sr) gets the shipped low-resolution example (16x16 for 4x on Shapes), not the 64x64 current image."""
    from mtu.examples import example_inputs
    from mtu.serve.guess import guess_task

    specs = service.pipe.unet.mtu_config.tasks
    task = guess_task(text, has_image=True, tasks=specs)
    if service.spec(task).upscale == 1:
        return []
    try:
        return [str(example_inputs(task)["image"])]
    except ValueError:  # a task without a shipped example: the user attaches their own
        return []


class ChatApp:
    """The gradio callbacks around a `ChatService`, kept apart from the layout so they read as plain code."""

    def __init__(self, service: ChatService):
        self.service = service
        self._files = tempfile.TemporaryDirectory(prefix="mtu-serve-")  # result PNGs on their way to the chat

    def respond(
        self,
        message: dict | None,
        history: list,
        editor: dict | None,
        task: str,
        steps: float,
        guidance: float,
        image_guidance: float,
        seed: float,
        stored: bool = False,
    ):
        """Chat callback: show the request at once, then the answer (an image, or why there is none).

        `stored`: run with each task's stored sampler settings (`mtu.sampler`), not the sliders' steps and guidance.

        Yields (conversation, request box, current image); the last result becomes the current image.
        """
        text, files = ((message or {}).get("text") or "").strip(), list((message or {}).get("files") or [])
        history, clear_box = list(history or []), gr.MultimodalTextbox(value=None)
        try:
            image, mask = self._inputs(files, editor)
        except RequestError as error:  # a bad attachment: name it rather than show it
            names = ", ".join(Path(f).name for f in files)
            history.append({"role": "user", "content": f"{text}\n\n(attached: {names})" if names else text})
            yield history + [{"role": "assistant", "content": f"Could not run this: {error}"}], clear_box, gr.skip()
            return
        attached = [{"path": f} for f in files]
        history.append({"role": "user", "content": ([text] if text else []) + attached if attached else text})
        yield history + [{"role": "assistant", "content": "working…"}], clear_box, gr.skip()
        try:
            settings = _settings(steps, guidance, image_guidance, seed)
            if not isinstance(stored, bool):  # API callers can send anything: "no" would be true
                raise RequestError(f"the stored-settings box must be true or false, got {shown(stored)}")
            if stored:
                settings = Settings(seed=settings.seed)  # None: the task's stored settings
            reply = self.service.run(text, image, mask, task, settings)
        except Exception as error:  # noqa: BLE001 - whatever happens, the user reads why in the chat
            if not isinstance(error, RequestError):
                logger.exception("request failed")
                error = f"the model failed on it ({type(error).__name__}); the server log has the details"
            yield history + [{"role": "assistant", "content": f"Could not run this: {error}"}], gr.skip(), gr.skip()
            return
        path = self._save(reply.image)
        answer = {
            "role": "assistant",
            "content": [{"path": path, "alt_text": f"{reply.task} result"}, self._caption(reply)],
        }
        current = {"background": reply.image, "layers": [], "composite": reply.image}
        yield history + [answer], gr.skip(), current
        # gradio copies a yielded file into its own cache (which `delete_cache` prunes) before it asks a
        # generator for more, so this copy is no longer needed: without this, every result stays on disk.
        Path(path).unlink(missing_ok=True)

    def _inputs(self, files: list[str], editor: dict | None) -> tuple[PIL.Image.Image | None, PIL.Image.Image | None]:
        """The image to work on (an attachment first, else the current image) and the painted mask, if any."""
        limits = self.service.limits
        if files:
            if len(files) > 1:
                raise RequestError(f"attach one image at a time, got {len(files)}")
            return load_upload(files[0], limits), None
        background = (editor or {}).get("background")
        if background is None:
            return None, None
        image = load_upload(background, limits)
        return image, mask_from_layers((editor or {}).get("layers"), image.size)

    def _save(self, image: PIL.Image.Image) -> str:
        path = Path(self._files.name) / f"{uuid.uuid4().hex}.png"
        image.save(path)
        return str(path)

    @staticmethod
    def _caption(reply: Reply) -> str:
        how = "guessed; pick a task to override" if reply.guessed else "chosen"
        others = len(reply.batch_tasks) - 1
        tasks = ", ".join(reply.batch_tasks)
        shared = f" · shared its denoising loop with {others} other request(s) ({tasks})" if others else ""
        return (
            f"**{reply.task}** ({how}) · {reply.steps} steps · seed {reply.seed} · "
            f"{reply.image.width}x{reply.image.height} · {reply.seconds:.1f} s{shared}"
        )

    def select_image(self, history: list, event: gr.SelectData):
        """Clicking an image of the conversation makes it the current image.

        The image is looked up in the conversation gradio sent (whose files it checked), never taken from
        the click event's value, which the browser could set to any path.
        """
        index = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not isinstance(index, int) or not 0 <= index < len(history or []):
            return gr.skip()
        content = history[index].get("content")
        for part in content if isinstance(content, list) else [content]:
            path = part.get("file", {}).get("path") if isinstance(part, dict) else None
            if path is not None:
                try:
                    image = load_upload(path, self.service.limits)
                except RequestError:
                    continue  # a file that is not an image: nothing to edit
                return {"background": image, "layers": [], "composite": image}
        return gr.skip()


def _settings(steps, guidance, image_guidance, seed) -> Settings:
    """The settings controls' values as `Settings` (API callers can send anything). Not converted here: the
    service's validator refuses steps 2.5, which int() made 2 (`ChatService.check_settings`)."""
    values = (steps, guidance, image_guidance, seed)
    if not all(isinstance(value, numbers.Real) and not isinstance(value, bool) for value in values):
        raise RequestError(
            f"settings must be numbers, got steps={shown(steps)}, guidance={shown(guidance)}, "
            f"image guidance={shown(image_guidance)}, seed={shown(seed)}"
        )
    return Settings(*values)


class RefusingBlocks(gr.Blocks):
    """`gr.Blocks` whose refusal of a request's inputs is one line for the caller (a `gr.Error`) and one line in
    the server log.

    gradio checks what reaches an event before the callback runs (a value outside a slider's range, a choice not in
    a menu, a file the browser did not upload, a malformed or incomplete API call) and prints a full traceback to
    the server log for each refusal. Here the scalar controls are checked first with their labels ("Steps must be
    between 1 and 100, got 10000"), and whatever gradio still refuses is reduced to one line.
    """

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            _check_controls(block_fn.inputs, inputs)
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as error:  # noqa: BLE001 - every refusal of the input, whatever gradio raised
            line = _one_line(error)
            logger.warning("refused a request to %s: %s", getattr(block_fn, "name", None) or "the page", line)
            raise gr.Error(line, print_exception=False) from None


def _check_controls(blocks: list, values: list) -> None:
    """Refuse a value a slider, number, menu or checkbox of the page would never send, naming the control."""
    if len(values) < len(blocks):
        labels = ", ".join(getattr(block, "label", None) or type(block).__name__ for block in blocks)
        raise RequestError(f"this event takes {len(blocks)} input values ({labels}), got {len(values)}")
    for block, value in zip(blocks, values):
        label = getattr(block, "label", None) or type(block).__name__
        if isinstance(block, (gr.Slider, gr.Number)):
            if value is None and isinstance(block, gr.Number):
                continue  # gradio passes an empty number on as None; the callback names it
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:
                raise RequestError(f"{label}: expected a number, got {shown(value)}")
            low, high = block.minimum, block.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise RequestError(f"{label} must be between {low} and {high}, got {shown(value)}")
        elif isinstance(block, gr.Dropdown) and not block.allow_custom_value and not block.multiselect:
            allowed = [choice[1] if isinstance(choice, (list, tuple)) else choice for choice in block.choices or []]
            if value not in allowed:
                raise RequestError(f"{label}: {shown(value)} is not one of {', '.join(map(str, allowed))}")
        elif isinstance(block, gr.Checkbox) and not isinstance(value, bool):
            raise RequestError(f"{label}: expected true or false, got {shown(value)}")


def _one_line(error: Exception) -> str:
    """What gradio (or `_check_controls`) refused, as one line of at most 300 characters."""
    from pydantic import ValidationError

    if isinstance(error, gr.Error):
        text = str(error.message)
    elif isinstance(error, ValidationError):  # a malformed chat message, conversation or image
        parts = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors()[:3]]
        text = f"{error.title}: {'; '.join(parts)}"
    elif isinstance(error, RequestError):
        text = str(error)
    else:  # gradio's own wording; its first line names the input ("Could not preprocess input component at...")
        text = str(error).strip().split(" with input components:")[0]
        text = f"{type(error).__name__}: {text}" if not isinstance(error, ValueError) else text
    text = " ".join(text.split())
    return text if len(text) <= 300 else f"{text[:297]}..."


def _api_error_handlers() -> dict:
    """FastAPI exception handlers for API calls that name no event of the page (an unknown API name or event
    index): gradio raises them out of its route, which the server logs with a traceback and answers 500. Here: 404
    with one line, and one line in the log."""
    from fastapi.responses import JSONResponse
    from gradio.route_utils import FnIndexInferError

    def refuse(request, line: str):
        logger.warning("refused %s %s: %s", request.method, request.url.path, line)
        return JSONResponse({"error": line}, status_code=404)

    async def unknown_name(request, error: FnIndexInferError):
        fns = request.app.get_blocks().fns.values()
        names = ", ".join(sorted(f"/{fn.api_name}" for fn in fns if fn.api_name and fn.api_visibility == "public"))
        return refuse(request, f"{error}; this page's API names: {names}")

    async def unknown_index(request, error: KeyError):
        frames = []
        tb = error.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        if not frames or frames[-1] != "get_fn":  # not an event lookup: a genuine failure, logged as one
            raise error
        return refuse(request, f"no event with index {shown(error.args[0] if error.args else None)}")

    return {FnIndexInferError: unknown_name, KeyError: unknown_index}


def build_app(
    service: ChatService, model_name: str = "", examples: list[str] | None = None, defaults: Settings | None = None
) -> gr.Blocks:
    """The demo page for `service` (not launched; see `mtu.serve.server.serve`).

    Args:
        service: what answers the requests.
        model_name: shown in the introduction.
        examples: example requests (default: ones the Shapes model knows).
        defaults: the settings the page's sliders start with, and use; None: the first task's stored sampler,
            with each task's stored settings used until the user unticks the box.
    """
    app = ChatApp(service)
    limits = service.limits
    with RefusingBlocks(title="mtu demo", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(_INTRO.format(model=model_name or "MTU model", tasks=", ".join(service.tasks)))
        with gr.Row():
            with gr.Column(scale=3):
                chat, box = _conversation()
            with gr.Column(scale=2):
                # The sliders start at the first task's stored settings (what "auto" runs a caption with).
                start = service.settings_for(service.tasks[0], defaults or Settings())
                editor, controls, clear = _current_image_and_controls(service, start, use_stored=defaults is None)
        gr.Examples(
            [[{"text": text, "files": _example_files(text, service)}] for text in examples or SHAPES_EXAMPLES],
            inputs=[box],
            label="Example requests" if examples else "Example requests (Shapes model)",
        )
        inputs = [box, chat, editor, *controls]
        # Each event has its own concurrency limit (default 1): lift it so requests of several users
        # reach the batching worker together; the worker's bounded queue is what refuses overload.
        box.submit(app.respond, inputs, [chat, box, editor], concurrency_limit=limits.max_queue + limits.max_batch)
        chat.select(app.select_image, [chat], [editor])
        clear.click(lambda: ([], None), None, [chat, editor])
    demo.queue(max_size=limits.max_queue)
    return demo


def _conversation() -> tuple[gr.Chatbot, gr.MultimodalTextbox]:
    """The left column: the conversation and the request box."""
    chat = gr.Chatbot(
        label="Conversation",
        height=560,
        elem_id="chat",
        feedback_options=None,
        placeholder="Results appear here; each one becomes the current image.",
    )
    box = gr.MultimodalTextbox(
        placeholder="A caption, or an instruction for the current image",
        file_types=["image"],
        file_count="single",
        sources=["upload"],
        submit_btn=True,
        show_label=False,
        elem_id="request",
    )
    return chat, box


def _current_image_and_controls(
    service: ChatService, defaults: Settings, use_stored: bool = True
) -> tuple[gr.ImageEditor, list, gr.Button]:
    """The right column: the current image, then (task, steps, guidance, image guidance, seed) and a reset."""
    editor = gr.ImageEditor(
        label="Current image (paint to mark an area to fill)",
        type="pil",
        sources=["upload", "clipboard"],
        layers=False,
        transforms=(),
        height=360,
        elem_id="current-image",
        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
    )
    choices = [(f"{AUTO}: guess from the request", AUTO)] + [(_label(service, t), t) for t in service.tasks]
    task = gr.Dropdown(choices, value=AUTO, label="Task", elem_id="task")
    with gr.Accordion("Settings", open=False):
        steps = gr.Slider(1, service.max_steps, value=defaults.steps, step=1, label="Steps")
        guidance = gr.Slider(0, 15, value=defaults.guidance, step=0.5, label="Text guidance (off at 1)")
        image_guidance = gr.Slider(
            0, 5, value=defaults.image_guidance, step=0.1, label="Image guidance (edit, sr, remove)"
        )
        seed = gr.Number(value=defaults.seed, precision=0, label="Seed (-1: random)")
        stored = gr.Checkbox(
            value=use_stored, label="Use each task's stored steps and guidance (untick to use the sliders)"
        )
    clear = gr.Button("New conversation")
    return editor, [task, steps, guidance, image_guidance, seed, stored], clear


def _label(service: ChatService, task: str) -> str:
    """A task's entry in the task menu: the built-in wording, else its spec's description."""
    description = service.spec(task).description
    return TASK_LABELS.get(task) or (f"{task}: {description}" if description else task)


def launch_options(limits: ServeLimits, host: str, port: int, token: str | None = None) -> dict[str, Any]:
    """`gr.Blocks.launch` arguments: loopback by default, uploads capped, no share link; with a token, the page
    asks for a log-in whose password is the token (any user name)."""
    return dict(
        auth=None if token is None else (lambda user, password: secrets.compare_digest(password, token)),
        auth_message="Log in with any user name and the server's token as the password.",
        server_name=host,
        server_port=port,
        max_file_size=limits.max_bytes,
        share=False,
        ssr_mode=False,
        show_error=True,
        css=CSS,
        app_kwargs={"exception_handlers": _api_error_handlers()},
    )
