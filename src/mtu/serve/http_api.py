"""The typed HTTP API beside the chat page: `POST /v1/generate`, served by the same `mtu serve` process, model,
limits and batching worker as the page (requests of the API and of the page share denoising loops).

    curl -s http://127.0.0.1:7860/v1/generate -H "Content-Type: application/json" \\
         -d '{"task": "t2i", "prompt": "a red circle at the top left, on a gray background"}'
    curl -s http://127.0.0.1:7860/v1/generate -H "Accept: image/png" -o edited.png \\
         -F task=edit -F prompt="make the red circle blue" -F image=@scene.png

Request, as JSON (images in base64) or as a multipart form (images as files): `task` (a task of the model, or
"auto" to guess it from the prompt), `prompt`, `image`, `mask` (inpaint: white where to fill), `seed` (negative:
a random one), `steps`, `guidance`, `image_guidance` (default: the task's stored sampler, `mtu.sampler`).
Response: JSON `{"image": base64 PNG, "task", "seed", "steps", "batch_tasks", "seconds"}`, or the PNG itself
with `Accept: image/png`. An error is `{"error": one line}`: 400 bad input, 401 no or wrong token, 413 body
too large, 503 busy or timed out; the server keeps serving. With a token (`mtu serve --token`, or the
`MTU_SERVE_TOKEN` variable) every request needs `Authorization: Bearer <token>`, and the page a log-in with
the token as password. The schema: `GET /v1/openapi.json`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets

from fastapi import Request  # at the top: FastAPI resolves the handler's annotations in this module
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtu.serve.batching import ServerBusy
from mtu.serve.limits import RequestError
from mtu.serve.service import ChatService, Settings
from mtu.serve.uploads import load_upload_bytes


class GenerateRequest(BaseModel):
    """One generation: what `ChatService.run` takes."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(description='a task of the model (e.g. "t2i", "edit", "sr"), or "auto" to guess it')
    prompt: str = Field("", description="caption or instruction; sr and inpaint may leave it empty")
    image: str | None = Field(None, description="the input image, base64 (PNG, JPEG, WebP, GIF or BMP)")
    mask: str | None = Field(None, description="inpaint: base64 mask the size of image, white where to fill")
    seed: int = Field(0, description="seed of the noise; negative: a random one")
    steps: int | None = Field(None, description="denoising steps (default: the task's stored sampler)")
    guidance: float | None = Field(None, description="text guidance (default: the task's stored sampler)")
    image_guidance: float | None = Field(None, description="image guidance (default: the task's stored sampler)")


class GenerateResponse(BaseModel):
    image: str = Field(description="the result, base64 PNG")
    task: str
    seed: int
    steps: int
    batch_tasks: list[str] = Field(description="the tasks of every request of the denoising loop that made it")
    seconds: float = Field(description="how long that loop took")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def add_http_api(app, service: ChatService, token: str | None = None) -> None:
    """Add `POST /v1/generate` and `GET /v1/openapi.json` to `app` (the page's FastAPI app)."""
    from fastapi import APIRouter
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()

    @router.post("/v1/generate", response_model=GenerateResponse, openapi_extra=_request_schema())
    async def generate(request: Request):
        try:
            _check_token(request, token)
            fields = await _read(request, service.limits.max_bytes)
            asked = _validate(fields)
            image, mask = _images(asked, fields, service)
            settings = Settings(asked.steps, asked.guidance, asked.image_guidance, asked.seed)
            reply = await run_in_threadpool(service.run, asked.prompt, image, mask, asked.task, settings)
        except ApiError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except ServerBusy as error:  # the queue is full, or the result did not come in time
            return JSONResponse({"error": str(error)}, status_code=503)
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        buffer = io.BytesIO()
        reply.image.save(buffer, format="PNG")
        if "image/png" in request.headers.get("accept", ""):
            return Response(buffer.getvalue(), media_type="image/png", headers={"X-MTU-Task": reply.task})
        body = GenerateResponse(
            image=base64.b64encode(buffer.getvalue()).decode(),
            task=reply.task,
            seed=reply.seed,
            steps=reply.steps,
            batch_tasks=list(reply.batch_tasks),
            seconds=reply.seconds,
        )
        return JSONResponse(body.model_dump())

    @router.get("/v1/openapi.json", include_in_schema=False)
    async def openapi():
        return get_openapi(title="mtu serve", version="1", routes=router.routes)

    app.include_router(router)


def _check_token(request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'")


async def _read(request, max_bytes: int) -> dict:
    """The request's fields: a JSON object, or a form's fields and files (file fields as bytes)."""
    limit = 3 * max_bytes + 65536  # two base64 images (4/3 their size) and the text
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request is {int(declared)} bytes; the limit is {limit}: send smaller images")
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        try:
            form = await request.form()
        except Exception as error:  # noqa: BLE001 - starlette's multipart errors: a malformed form
            raise ApiError(400, f"the form could not be read ({error}); send multipart/form-data or JSON") from None
        return {key: (await value.read() if hasattr(value, "read") else value) for key, value in form.items()}
    body = await request.body()
    if len(body) > limit:
        raise ApiError(413, f"the request is {len(body)} bytes; the limit is {limit}: send smaller images")
    try:
        fields = json.loads(body)
    except ValueError as error:
        raise ApiError(400, f"the body is not JSON ({error}); send a JSON object or a multipart form") from None
    if not isinstance(fields, dict):
        raise ApiError(400, f"the body must be a JSON object of fields, got {type(fields).__name__}")
    return fields


def _validate(fields: dict) -> GenerateRequest:
    """The typed request; the first problem as one line."""
    texts = {key: ("<file>" if isinstance(value, bytes) else value) for key, value in fields.items()}
    try:
        return GenerateRequest.model_validate(texts)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise ApiError(400, f"{where}: {problem['msg']}") from None


def _images(asked: GenerateRequest, fields: dict, service: ChatService):
    """The image and mask of a request, decoded within the server's upload limits."""
    decoded = {}
    for name in ("image", "mask"):
        value = fields.get(name)
        if value is None or value == "":
            decoded[name] = None
            continue
        data = value if isinstance(value, bytes) else _base64(name, value)
        decoded[name] = load_upload_bytes(data, name, service.limits)
    image, mask = decoded["image"], decoded["mask"]
    if mask is not None and (image is None or mask.size != image.size):
        size = "no image" if image is None else f"image {image.size[0]}x{image.size[1]}"
        raise ApiError(400, f"mask is {mask.size[0]}x{mask.size[1]} but there is {size}: send a mask the image's size")
    return image, None if mask is None else mask.convert("L")


def _base64(name: str, value: str) -> bytes:
    text = value.split(",", 1)[1] if value.startswith("data:") else value  # a data URL's payload
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{name} is not valid base64 (a PNG or JPEG file's bytes, base64-encoded)") from None


def _request_schema() -> dict:
    """OpenAPI request body: the JSON object, or the same fields as a multipart form with image files."""
    schema = GenerateRequest.model_json_schema()
    form = json.loads(json.dumps(schema))
    for name in ("image", "mask"):
        described = schema["properties"][name]["description"]
        form["properties"][name] = {"type": "string", "format": "binary", "description": described}
    content = {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}}
    return {"requestBody": {"required": True, "content": content}}
