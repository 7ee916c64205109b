"""The HTTP API and web page around a :class:`~segzero.pipeline.ReasoningSegmenter`.

Endpoints:

- ``POST /v1/segment``: an image and a request -> reasoning, objects, mask (COCO RLE), optional overlay PNG.
- ``POST /v1/segment/stream``: the same, the reasoner's text streamed as it is written (server-sent events).
- ``GET /health``: model names, whether the model is ready (warmed up), queue depth, batches served,
  limits.
- ``GET /metrics``: batcher counters and the histogram of batch sizes.
- ``GET /``: the web page; ``GET /examples``: what the page suggests trying with the loaded models (and
  ``/examples/N.png``, its example images); ``/docs`` and ``/openapi.json``: the API description.

Errors are JSON ``{"error": "one sentence"}`` with these statuses: 400 malformed body,
408 headers or body slower than ``header_timeout_s`` / ``body_timeout_s`` (the connection is
closed), 413 upload over ``max_upload_bytes`` or image over ``max_pixels`` (both "too large":
the client should send something smaller), 415 not multipart/JSON or not a supported
image format, 422 missing/empty/too-long request or a corrupt image, 503 queue full
(with ``Retry-After``), 504 no answer within ``request_timeout_s``, 500 the model
failed on the batch (other batches are unaffected), 502 the reasoner engine (a server behind
``--engine openai``) gave up on this request after its retries. A model that answers that nothing in
the image matches gets no error: a 200 with ``status`` ``no_target``, ``no_target`` true, no objects and an
all-zero mask of the image's size.

With a streaming engine (vllm, openai) requests are not batched: each goes to the pipeline as it
arrives and is answered as soon as it is done (:mod:`segzero.serve.batcher`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.resources import files
from typing import Any, Protocol

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from segzero.defaults import MAX_IMAGE_PIXELS
from segzero.serve.batcher import (
    Batcher,
    BatcherStoppedError,
    BatchFailedError,
    QueueFullError,
    logger,
)
from segzero.serve.examples import PageExamples, page_examples
from segzero.serve.inputs import ALLOWED_NAMES, ApiError, decode_image, read_segment_input
from segzero.serve.settings import ServeSettings

STATIC_DIR = files("segzero.serve") / "static"


class Pipeline(Protocol):
    """What the server needs of the pipeline: :meth:`ReasoningSegmenter.segment_batch`.

    The start-up warm-up also passes ``max_new_tokens`` (a generation keyword argument). A pipeline whose
    ``streams`` is True also has ``submit(image, request) -> Future``, which the batcher then uses.
    """

    def segment_batch(self, images: list[Any], requests: list[str], **generate_kwargs: Any) -> list[Any]: ...


#: The start-up warm-up: one request on a small grey image, a few tokens long. The reasoner and SAM2
#: resize every image to their own input size, so this runs the same shapes as real requests.
WARMUP_REQUEST = "the object in the middle"
WARMUP_IMAGE_SIZE = (64, 64)
WARMUP_TOKENS = 8


class WarmupError(RuntimeError):
    """The start-up warm-up request failed, so the model cannot serve; the server does not start."""


# -- response models (for /docs; responses are built as plain dicts) ------------------------


class ErrorResponse(BaseModel):
    error: str = Field(description="One sentence saying what was wrong and what to do.")


class ObjectOut(BaseModel):
    box: list[int] | None = Field(description="[x1, y1, x2, y2] in original image pixels (inclusive).")
    points: list[list[int]] = Field(description="Positive clicks [[x, y], ...] in original image pixels.")
    label: str | None = Field(default=None, description="The phrase the answer names the object with, if any.")


class RleOut(BaseModel):
    size: list[int] = Field(description="[height, width].")
    counts: str = Field(
        description="COCO compressed RLE string (column-major runs, starting with background)."
    )


class SegmentResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    request: str
    thinking: str | None = Field(description="The model's reasoning (inside <think>), or null.")
    completion: str = Field(description="The raw text the reasoner wrote.")
    status: str = Field(
        description="ok, partial, no_target (nothing in the image matches), no_answer, invalid_json or "
        "invalid_values."
    )
    reason: str = Field(description="Why the answer was unusable or partial; empty when ok or no_target.")
    no_target: bool = Field(
        description="True when the model answered that nothing in the image matches the request: no objects "
        "and an all-zero mask."
    )
    objects: list[ObjectOut]
    reasoner_objects: list[ObjectOut] = Field(description="The same prompts in the reasoner's frame.")
    score: float | None = Field(description="SAM2's predicted IoU, or null when nothing was segmented.")
    image_size: list[int] = Field(
        description="[width, height] of the image as decoded (EXIF rotation applied)."
    )
    mask_area: int
    mask_rle: RleOut
    timings: dict[str, float] = Field(
        description="Seconds: pipeline stages (load, reason, segment, total; batch stages shared equally), "
        "plus decode (reading and decoding the upload), queue (waiting for a batch), batch (the whole "
        "batch's pipeline call) and server_total."
    )
    batch_size: int = Field(
        description="How many requests shared this request's pipeline call (streaming engines: how many "
        "were in the reasoner with it when it was handed over)."
    )
    overlay_png_base64: str | None = Field(
        None,
        description="When overlay=true: a PNG of the image beside it with the mask, box and points drawn, a "
        "legend, and the request and reasoning underneath (the picture `segzero segment` writes).",
    )


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    ready: bool = Field(
        description="The model has answered a request (the start-up warm-up or a real one), so lazy "
        "initialisation is behind it. False only with --no-warmup, until the first batch is served."
    )
    warmup_s: float | None = Field(description="Seconds the start-up warm-up took; null without one.")
    reasoner: str | None
    engine: str | None = Field(description="Where the reasoner runs: transformers, vllm or openai.")
    segmenter: str | None
    queue_depth: int
    running: int
    batches_served: int
    requests_served: int
    limits: dict[str, Any]


_ERRORS = {
    400: "Malformed body: invalid or too deeply nested JSON, invalid base64 or multipart.",
    408: "Headers or body not received within header_timeout_s / body_timeout_s; the connection is closed.",
    413: "Upload larger than max_upload_bytes, or image larger than max_pixels.",
    415: f"Body neither multipart/form-data nor application/json, or image not {ALLOWED_NAMES}.",
    422: "Missing field, empty or too long request, unknown field, or corrupt image.",
    502: "The reasoner engine's server gave up on this request after its retries.",
    500: "The model failed on the batch this request was in.",
    503: "The queue is full; retry after the Retry-After header's seconds.",
    504: "No answer within request_timeout_s.",
}

_STREAM_DESCRIPTION = (
    "Server-sent events: `text` events (`{\"text\": ...}`, the next piece of the reasoner's completion, "
    "in order; they join into `completion`), then one `result` event (the body `POST /v1/segment` returns) "
    "or one `error` event (`{\"error\": ..., \"status\": ...}`: the status `POST /v1/segment` would have "
    "answered)."
)

_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "request"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": f"{ALLOWED_NAMES} file."},
                    "request": {"type": "string", "description": "What to segment."},
                    "overlay": {
                        "type": "boolean",
                        "default": False,
                        "description": "Also return an overlay PNG.",
                    },
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image_base64", "request"],
                "properties": {
                    "image_base64": {
                        "type": "string",
                        "description": "The image file's bytes in base64 (a data: URL is accepted).",
                    },
                    "request": {"type": "string", "description": "What to segment."},
                    "overlay": {"type": "boolean", "default": False},
                },
            }
        },
    },
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _model_name(pipeline: Any, part: str) -> str | None:
    return getattr(getattr(pipeline, part, None), "name", None)


def create_app(
    pipeline: Pipeline, settings: ServeSettings | None = None, examples: PageExamples | None = None
) -> FastAPI:
    """The FastAPI application serving ``pipeline`` with ``settings``.

    Args:
        pipeline: a loaded :class:`~segzero.pipeline.ReasoningSegmenter` (or anything with its
            ``segment_batch``); its ``batch_size`` should be at least ``settings.max_batch_size``
            so one batch is one ``generate`` call.
        settings: batching and limits; defaults when omitted.
        examples: what the page suggests trying (default: :func:`~segzero.serve.examples.page_examples`
            for the pipeline's reasoner).
    """
    settings = settings or ServeSettings()
    examples = examples or page_examples(_model_name(pipeline, "reasoner"))
    # The pixel cap is the pipeline's own (PipelineConfig.max_pixels): one limit for the API and the CLI.
    max_pixels = getattr(pipeline, "max_pixels", MAX_IMAGE_PIXELS)
    batcher = Batcher(
        pipeline.segment_batch,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        queue_size=settings.queue_size,
        submit=pipeline.submit if getattr(pipeline, "streams", False) else None,
    )
    decode_limiter = anyio.CapacityLimiter(settings.decode_workers)
    if getattr(pipeline, "batch_size", settings.max_batch_size) < settings.max_batch_size:
        logger.warning(
            "pipeline batch_size %d < max_batch_size %d: one batch takes several generate calls",
            pipeline.batch_size,
            settings.max_batch_size,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        if settings.warmup:
            app.state.warmup_s = await _warm_up(batcher)
        logger.info(
            "serving %s + %s (max batch %d, max wait %g ms, queue %d)",
            _model_name(pipeline, "reasoner"),
            _model_name(pipeline, "segmenter"),
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.queue_size,
        )
        yield
        await batcher.stop()

    app = FastAPI(
        title="segzero",
        summary="Reasoning segmentation: a reasoner thinks and points, SAM2 draws the mask.",
        version="1",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.settings = settings
    app.state.pipeline = pipeline
    app.state.warmup_s = None

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"There is nothing at {request.url.path}; see /docs for the API."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API."
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"The server failed unexpectedly ({type(exc).__name__}); the log has the details.")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"Invalid {where or 'input'}: {first.get('msg', 'bad value')}.")

    @app.post(
        "/v1/segment",
        response_model=SegmentResponse,
        responses={status: {"model": ErrorResponse, "description": text} for status, text in _ERRORS.items()},
        openapi_extra={"requestBody": _REQUEST_BODY},
        summary="Segment what a request means in an image",
    )
    async def segment(request: Request) -> JSONResponse:
        """Multipart (file ``image``, field ``request``, optional ``overlay=true``) or JSON
        (``image_base64``, ``request``, optional ``overlay``). Boxes and points are in the image's pixels."""
        started = time.perf_counter()
        given, image, decoded = await read_and_decode(request)
        return JSONResponse(await answer(given, image, started, decoded))

    @app.post(
        "/v1/segment/stream",
        responses={
            200: {"content": {"text/event-stream": {}}, "description": _STREAM_DESCRIPTION},
            **{status: {"model": ErrorResponse, "description": text} for status, text in _ERRORS.items()},
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
        summary="The same, with the reasoner's text streamed as it is written (server-sent events)",
    )
    async def segment_stream(request: Request) -> StreamingResponse:
        """The body of ``POST /v1/segment``; the answer comes as server-sent events (see the 200 response).

        The input is read, checked and decoded before the stream starts, so bad input gets its usual status.
        The same limits hold: the request's answer is awaited at most ``request_timeout_s``.
        """
        started = time.perf_counter()
        given, image, decoded = await read_and_decode(request)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def on_text(text: str) -> None:  # on the model's thread
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, text)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                pass

        answering = asyncio.create_task(answer(given, image, started, decoded, on_text))

        async def events() -> AsyncIterator[str]:
            try:
                while not answering.done():
                    piece = asyncio.ensure_future(pieces.get())
                    await asyncio.wait({piece, answering}, return_when=asyncio.FIRST_COMPLETED)
                    if piece.done():
                        yield _event("text", {"text": piece.result()})
                    else:
                        piece.cancel()
                while not pieces.empty():  # pieces scheduled before the answer was set
                    yield _event("text", {"text": pieces.get_nowait()})
                try:
                    body = answering.result()
                except ApiError as exc:
                    yield _event("error", {"error": exc.message, "status": exc.status})
                    return
                yield _event("result", body)
            finally:  # the client left: the request leaves the queue, as a timed-out one does
                answering.cancel()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def read_and_decode(request: Request) -> tuple[Any, Any, float]:
        """The request's input, checked against the limits, and its decoded image; when decoding ended.

        Raises:
            ApiError: bad input (400, 408, 413, 415, 422), or a full queue (503) before any decoding.
        """
        given = await read_segment_input(request, settings)
        if batcher.is_full():  # refuse before spending time decoding
            batcher.stats.rejected_queue_full += 1
            raise _queue_full(batcher.retry_after_s())
        async with decode_limiter:
            image = await anyio.to_thread.run_sync(decode_image, given.image_bytes, max_pixels)
        given.image_bytes = b""  # the decoded image is all that is kept while queued
        return given, image, time.perf_counter()

    async def answer(
        given: Any, image: Any, started: float, decoded: float, on_text: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Run one request through the batcher; the response body (see :class:`SegmentResponse`).

        Raises:
            ApiError: 503 queue full or shutting down, 504 no answer within ``request_timeout_s``, 500 the
                model failed on the batch, 502 the reasoner engine gave up on the request.
        """
        try:
            outcome = await batcher.submit(image, given.request, settings.request_timeout_s, on_text)
        except QueueFullError as exc:
            raise _queue_full(exc.retry_after_s) from None
        except TimeoutError:
            raise ApiError(
                504,
                f"No answer within {settings.request_timeout_s:g} s; the server is busy or the model "
                "is slow, try again later.",
            ) from None
        except BatchFailedError as exc:
            raise ApiError(500, f"The model failed on this request's batch ({exc}); try again.") from None
        except BatcherStoppedError:
            raise ApiError(
                503, "The server is shutting down; try again shortly.", {"Retry-After": "5"}
            ) from None
        if getattr(outcome.result, "error", None):
            raise ApiError(502, f"The reasoner gave no answer ({outcome.result.error}); try again later.")
        body = await anyio.to_thread.run_sync(_result_json, outcome.result, image, given.overlay)
        body["batch_size"] = outcome.batch_size
        body["timings"] = {
            **body.get("timings", {}),
            "decode": decoded - started,
            "queue": outcome.queue_s,
            "batch": outcome.run_s,
            "server_total": time.perf_counter() - started,
        }
        return body

    @app.get("/health", response_model=HealthResponse, summary="Models, queue depth and batches served")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "ready": app.state.warmup_s is not None or batcher.stats.batches > 0,
            "warmup_s": app.state.warmup_s,
            "reasoner": _model_name(pipeline, "reasoner"),
            "engine": getattr(getattr(pipeline, "reasoner", None), "engine", None),
            "segmenter": _model_name(pipeline, "segmenter"),
            "frame": getattr(pipeline, "frame", None),
            "queue_depth": batcher.queue_depth,
            "running": batcher.running,
            "batches_served": batcher.stats.batches,
            "requests_served": batcher.stats.requests,
            "limits": asdict(settings),
        }

    @app.get("/metrics", summary="Batcher counters and the histogram of batch sizes")
    async def metrics() -> dict[str, Any]:
        return {"queue_depth": batcher.queue_depth, "running": batcher.running, **batcher.stats.to_json()}

    @app.get("/examples", summary="What the web page suggests trying with the loaded models")
    async def list_examples() -> dict[str, Any]:
        return examples.to_json()

    @app.get("/examples/{number}.png", include_in_schema=False)
    async def example_image(number: int) -> Response:
        if not 0 <= number < len(examples.images):
            raise ApiError(404, f"There is no example image {number}; GET /examples lists them.")
        return Response(examples.images[number][1], media_type="image/png")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


async def _warm_up(batcher: Batcher) -> float:
    """Run the warm-up request on the model thread; return its seconds.

    Raises:
        WarmupError: the pipeline failed on it (the server must not take traffic it cannot answer).
    """
    from PIL import Image

    image = Image.new("RGB", WARMUP_IMAGE_SIZE, (128, 128, 128))
    logger.info("warming up: one %dx%d request through the pipeline", *WARMUP_IMAGE_SIZE)
    started = time.perf_counter()
    try:
        await batcher.run_alone([image], [WARMUP_REQUEST], max_new_tokens=WARMUP_TOKENS)
    except Exception as exc:
        raise WarmupError(
            f"The warm-up request failed ({type(exc).__name__}: {exc}), so the model cannot serve; check the "
            "device and its memory (--device, --dtype). --no-warmup skips this check."
        ) from exc
    seconds = time.perf_counter() - started
    logger.info("warm-up done in %.2f s; ready", seconds)
    return seconds


def _event(name: str, data: dict[str, Any]) -> str:
    """One server-sent event: ``event: NAME`` and its data as one line of JSON."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _queue_full(retry_after_s: int) -> ApiError:
    return ApiError(
        503,
        f"The server is busy (queue full); try again in about {retry_after_s} s.",
        {"Retry-After": str(retry_after_s)},
    )


def _result_json(result: Any, image: Any, overlay: bool) -> dict[str, Any]:
    """The pipeline result as JSON (mask as COCO RLE), with the overlay PNG in base64 if asked for: the
    picture ``segzero segment`` writes (:meth:`~segzero.pipeline.SegmentationResult.overlay`)."""
    body = result.to_json()
    if overlay:
        buffer = io.BytesIO()
        result.overlay(image).save(buffer, format="PNG")
        body["overlay_png_base64"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return body
