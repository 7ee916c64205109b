"""Reading and checking what clients send, before anything is queued for the model.

Every failure is an :class:`ApiError` with the HTTP status and one sentence for the
client. Bodies are read through a byte counter, so an oversized upload is refused
while it streams in, never after it has been buffered. Only bytes sent in the body
are used: the server never opens paths or fetches URLs named by clients.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from segzero.errors import InputError
from segzero.images import load_image
from segzero.prompts import normalize_request
from segzero.serve.settings import ServeSettings

#: Image formats the server decodes; anything else is 415. Deliberately short: Pillow can
#: open more (EPS would start Ghostscript), and a server should not.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
ALLOWED_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"

MULTIPART_FIELDS = ("image", "request", "overlay")
JSON_FIELDS = ("image_base64", "request", "overlay")


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _BodyTooLarge(Exception):
    pass


@dataclass
class SegmentInput:
    """One checked request: the raw image bytes (not yet decoded), the request text and options."""

    image_bytes: bytes
    request: str
    overlay: bool = False


def _too_large(settings: ServeSettings) -> ApiError:
    return ApiError(
        413,
        f"The upload is larger than the limit of {settings.max_upload_bytes:,} bytes; send a smaller image.",
    )


async def _limited_stream(request: Request, limit: int, timeout_s: float) -> AsyncIterator[bytes]:
    """The request body, raising :class:`_BodyTooLarge` as soon as more than ``limit`` bytes have arrived.

    Raises:
        ApiError: 408 (closing the connection) when the whole body has not arrived within ``timeout_s``
            of the first read; 400 when the client disconnects before sending all of it.
    """
    seen = 0
    chunks = request.stream()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(
                408,
                f"The request body did not arrive within {timeout_s:g} s; send it faster or a smaller image.",
                {"Connection": "close"},
            ) from None
        except ClientDisconnect:
            raise ApiError(400, "The client disconnected before sending the whole body.") from None
        seen += len(chunk)
        if seen > limit:
            raise _BodyTooLarge
        yield chunk


def _check_declared_length(request: Request, limit: int, settings: ServeSettings) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise ApiError(400, "The Content-Length header is not a number.") from None
    if length > limit:
        raise _too_large(settings)


async def read_segment_input(request: Request, settings: ServeSettings) -> SegmentInput:
    """Parse a ``/v1/segment`` body: multipart (file ``image``, ``request``, ``overlay``) or JSON.

    Raises:
        ApiError: 400 malformed body, 413 too large, 415 other content type, 422 missing or bad fields.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/json"):
        limit = settings.max_body_bytes(base64=content_type == "application/json")
        _check_declared_length(request, limit, settings)
    if content_type == "multipart/form-data":
        data, text, overlay = await _read_multipart(request, settings, limit)
    elif content_type == "application/json":
        data, text, overlay = await _read_json(request, settings, limit)
    else:
        raise ApiError(
            415,
            f"Unsupported content type {content_type or '(none)'!r}: send multipart/form-data with a file "
            "'image' and a field 'request', or application/json with 'image_base64' and 'request'.",
        )
    if not data:
        raise ApiError(422, "The image is empty: send the bytes of a PNG, JPEG or WebP file.")
    if len(data) > settings.max_upload_bytes:
        raise _too_large(settings)
    return SegmentInput(data, check_request_text(text, settings.max_request_chars), overlay)


async def _read_multipart(
    request: Request, settings: ServeSettings, limit: int
) -> tuple[bytes, object, bool]:
    body = _limited_stream(request, limit, settings.body_timeout_s)
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=8, max_part_size=limit)
    try:
        form = await parser.parse()
    except _BodyTooLarge:
        raise _too_large(settings) from None
    except MultiPartException as exc:
        raise ApiError(400, f"The multipart body could not be read: {exc.message}") from None
    try:
        _refuse_unknown(form.keys(), MULTIPART_FIELDS, "form", "the file 'image'")
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "The form has no file field 'image': attach the image file as 'image'.")
        data = await upload.read()
        overlay = form.get("overlay")
        return data, form.get("request"), parse_bool(overlay, "overlay") if overlay is not None else False
    finally:
        await form.close()


def _refuse_unknown(given: Iterable[str], known: Sequence[str], body: str, image_field: str) -> None:
    """422 naming the fields of ``given`` the API does not have (``body``: "form" or "JSON") and the
    ones it does; ``image_field`` says where the image goes in that kind of body."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        shown = ", ".join(name[:40] for name in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ApiError(
            422,
            f"Unknown {body} field(s) {shown}: send the image bytes as {image_field} "
            "(the server does not read paths or URLs), the text as 'request', optionally 'overlay'.",
        )


async def _read_json(request: Request, settings: ServeSettings, limit: int) -> tuple[bytes, object, bool]:
    chunks = []
    try:
        async for chunk in _limited_stream(request, limit, settings.body_timeout_s):
            chunks.append(chunk)
    except _BodyTooLarge:
        raise _too_large(settings) from None
    try:
        body = json.loads(b"".join(chunks))
    except RecursionError:  # the decoder's depth bound is the interpreter's recursion limit
        raise ApiError(400, "The JSON body is nested too deeply; send one flat object.") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of over 4,300 digits
        raise ApiError(400, f"The body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise ApiError(422, 'The JSON body must be an object: {"image_base64": ..., "request": ...}.')
    _refuse_unknown(body, JSON_FIELDS, "JSON", "'image_base64'")
    encoded = body.get("image_base64")
    if not isinstance(encoded, str):
        raise ApiError(
            422, "'image_base64' is missing or not a string: send the image file's bytes in base64."
        )
    overlay = body.get("overlay", False)
    if not isinstance(overlay, bool):
        raise ApiError(422, "'overlay' must be true or false.")
    return decode_base64(encoded, settings), body.get("request"), overlay


def decode_base64(encoded: str, settings: ServeSettings) -> bytes:
    """Standard base64 (whitespace and a ``data:...;base64,`` prefix allowed) -> bytes; 400 if malformed."""
    if encoded.startswith("data:"):
        header, sep, encoded = encoded.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ApiError(400, "'image_base64' is a data URL without ';base64,': send base64 data.")
    encoded = "".join(encoded.split())
    if len(encoded) * 3 // 4 > settings.max_upload_bytes + 3:
        raise _too_large(settings)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'image_base64' is not valid base64.") from None


def parse_bool(value: object, name: str) -> bool:
    """A form value (``true/false``, ``1/0``, ``yes/no``, ``on/off``) -> bool; 422 otherwise."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ApiError(422, f"'{name}' must be true or false, got {str(value)[:40]!r}.")


def check_request_text(text: object, max_chars: int) -> str:
    """The request text as given, if non-empty text of at most ``max_chars`` characters; 422 otherwise."""
    if text is None:
        raise ApiError(
            422, "The field 'request' is missing: say what to segment, e.g. 'the cup on the left'."
        )
    if not isinstance(text, str):
        raise ApiError(422, "The field 'request' must be text.")
    try:
        normalize_request(text)
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
    if len(text) > max_chars:
        raise ApiError(
            422, f"The request is {len(text):,} characters long, over the limit of {max_chars:,}; shorten it."
        )
    return text


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image, checking the format and the pixel count from the header before decoding.

    Raises:
        ApiError: 415 not an allowed image format, 413 too many pixels, 422 truncated or corrupt.
    """
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
            width, height = probe.size
    except UnidentifiedImageError:
        raise ApiError(415, f"The upload is not a supported image; send {ALLOWED_NAMES}.") from None
    except Image.DecompressionBombError:
        raise ApiError(413, f"The image has too many pixels; the limit is {max_pixels:,}.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(422, f"The image header could not be read; the file may be corrupt ({exc}).") from None
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"The image is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}; "
            "send a smaller image.",
        )
    try:
        return load_image(data, max_pixels)
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
