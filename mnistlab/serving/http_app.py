"""The HTTP API around a :class:`~mnistlab.serving.inference.Predictor` (FastAPI), and the drawing page.

- ``POST /api/v1/predict``: multipart field ``file`` → ``label``, ``probabilities``, ``top3`` and ``input``
  (the image the model saw, after the preprocessing ``/health`` names).
- ``GET /health``: the model's classes, input shape, preprocessing and backend.
- ``GET /``: for a digit model (``preprocess`` ``mnist``), a page to draw a digit on, which calls the API
  after every stroke; for any other model a page to upload an image (drawing is for digits only).
- ``GET /docs`` and ``GET /redoc``: the OpenAPI pages, with their Swagger UI and ReDoc files served from the
  installed ``fastapi-offline`` package (they render offline; FastAPI's defaults load them from a CDN).

Bad input never gives a 500: bodies over ``max_upload_bytes`` are refused with 413 before they are read,
absurd image dimensions (decompression bombs) with 413 before they are decoded, and anything that is not a
usable image with 400. Every error is JSON: ``{"detail": "…"}``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab.serving.inference import Predictor
from mnistlab.serving.preprocess import DEFAULT_MAX_DECODED_MB, DEFAULT_MAX_PIXELS, BadImageError, open_image

MB = 1024 * 1024


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 and is never held in memory whole.

    A declared Content-Length is checked before reading; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        async def replay() -> Message:
            nonlocal body
            message, body = {"type": "http.request", "body": body, "more_body": False}, b""
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_bytes / MB:g} MB"
        response = JSONResponse({"detail": f"the upload is larger than {limit} (serve max_upload_mb=…)"}, 413)
        await response(scope, receive, send)


class Guess(BaseModel):
    label: str = Field(examples=["7"])
    probability: float = Field(examples=[0.993])


class Prediction(BaseModel):
    label: str = Field(description="the most probable class", examples=["7"])
    index: int = Field(description="its index in the model's classes", examples=[7])
    probabilities: dict[str, float] = Field(description="every class's probability")
    top3: list[Guess]
    input: list = Field(description="the image the model saw after preprocessing (H×W gray, or H×W×3)")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    backend: str = Field(examples=["torch"])
    classes: list[str]
    input_shape: list[int] = Field(examples=[[1, 28, 28]])
    preprocess: str = Field(examples=["mnist"])


class Problem(BaseModel):
    detail: str = Field(description="what was wrong and what to send instead")


def _error(description: str, example: str) -> dict[str, Any]:
    return {
        "model": Problem,
        "description": description,
        "content": {"application/json": {"example": {"detail": example}}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("not a usable image, or no multipart field 'file'", "not an image (PNG, JPG, BMP, GIF, WebP or TIFF)"),
    413: _error(
        "the upload or its decoded image is too large", "the upload is larger than 2 MB (serve max_upload_mb=…)"
    ),
}


def _page(name: str) -> str:
    """A page of static/, with the script both pages share pasted in (one file, no second request)."""
    static = files("mnistlab.serving").joinpath("static")
    shared = static.joinpath("shared.js").read_text(encoding="utf-8")
    return static.joinpath(name).read_text(encoding="utf-8").replace("// @include shared.js\n", shared)


def drawing_page() -> str:
    return _page("index.html")


def page_for(preprocess: str) -> str:
    """The drawing page for digit models; an upload page for the others, whose classes no drawing shows."""
    return drawing_page() if preprocess == "mnist" else _page("upload.html")


def create_app(
    predictor: Predictor,
    max_upload_bytes: int = 2 * MB,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
    backend: str = "torch",
    workers: int = 2,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
) -> FastAPI:
    """The app. Decoding and inference run in at most ``workers`` threads at once, never on the event loop,
    so ``/health`` and the page answer while large uploads are being decoded."""
    from fastapi_offline import FastAPIOffline

    from mnistlab import __version__

    # /docs and /redoc from the Swagger UI and ReDoc files the package ships (FastAPI's own load them from a CDN)
    app = FastAPIOffline(
        title="mnistlab",
        version=__version__,
        summary="Classify an image with a trained mnistlab model",
        static_url="/docs-assets",
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    card = predictor.card
    page = page_for(card.preprocess)
    pool = anyio.CapacityLimiter(workers)

    def classify(data: bytes) -> dict:
        image = open_image(data, max_image_pixels, max_decoded_mb)
        (prediction,) = predictor.predict([image])
        return prediction.to_dict(with_input=True)

    @app.exception_handler(BadImageError)
    async def bad_image(request: Request, err: BadImageError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return JSONResponse({"detail": f"send the image as multipart form field 'file' ({problems})"}, 400)

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": backend,
            "classes": card.classes,
            "input_shape": list(card.input_shape),
            "preprocess": card.preprocess,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.post("/api/v1/predict", response_model=Prediction, responses=ERRORS)
    async def predict(file: Annotated[UploadFile, File(description="PNG, JPG, BMP, GIF, WebP or TIFF")]) -> dict:
        data = await file.read()
        return await anyio.to_thread.run_sync(classify, data, limiter=pool)

    return app
