"""``segzero serve`` against hostile clients, over real sockets on loopback: malformed bodies get a 4xx
and keep the connection, slow clients are cut off after the timeouts, filenames are never used."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from segzero.serve import ServeSettings, create_app
from segzero.serve.server import LoopbackServer

TIMEOUT_S = 1.0


def png_bytes(width: int = 40, height: int = 30, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header (with a valid checksum) claims ``width x height`` pixels."""
    data = bytearray(png_bytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC covers type and fields
    return bytes(data)


@pytest.fixture(scope="module")
def server(tiny_pipeline):
    settings = ServeSettings(
        max_wait_ms=300,
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
        keep_alive_timeout_s=TIMEOUT_S,
        warmup=False,
    )
    with LoopbackServer(create_app(tiny_pipeline, settings)) as running:
        yield running


class Response:
    def __init__(self, raw: bytes, closed: bool, seconds: float) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else None
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.closed = closed
        self.seconds = seconds

    def json(self) -> dict:
        return json.loads(self.body)


def read_response(sock: socket.socket, wait: float = 10.0, probe_close: bool = False) -> Response:
    """One response (by its content-length) from ``sock``; ``closed`` says whether the server hung up
    (with ``probe_close``, also within half a second after the response)."""
    sock.settimeout(wait)
    started = time.monotonic()
    data = b""
    closed = False
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            closed = True
            break
        data += chunk
    seconds = time.monotonic() - started
    if probe_close and not closed:
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            pass
    return Response(data, closed, seconds)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def request(method: str, path: str, body: bytes = b"", content_type: str | None = None, **headers) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(server, data: bytes, probe_close: bool = False) -> tuple[Response, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(data)
    return read_response(sock, probe_close=probe_close), sock


def still_serves(sock: socket.socket) -> bool:
    """The same connection answers a health check (the malformed request did not cost it)."""
    sock.sendall(request("GET", "/health"))
    return read_response(sock).status == 200


def multipart(fields: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart form with ``(name, filename or None, value)`` parts, as
    httpx encodes it (form fields first, then files)."""
    import httpx

    files = [(name, (filename, value)) for name, filename, value in fields if filename is not None]
    data = [(name, value) for name, filename, value in fields if filename is None]
    encoded = httpx.Request("POST", "http://127.0.0.1/", files=files, data=dict(data) if data else None)
    return encoded.read(), encoded.headers["content-type"]


# -- malformed bodies: a 4xx and the keep-alive connection survives -----------------------------


def test_a_json_body_nested_100000_deep_is_a_400_and_keeps_the_connection(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(request("POST", "/v1/segment", b"[" * 100_000, "application/json"))
    response = read_response(sock, probe_close=True)
    assert response.status == 400 and "nested too deeply" in response.json()["error"]
    assert not response.closed and still_serves(sock)
    sock.close()


def test_a_json_number_python_refuses_to_convert_is_a_400(server):
    body = b'{"image_base64": "aGk=", "request": "the cup", "overlay": 1' + b"0" * 5000 + b"}"
    response, sock = exchange(server, request("POST", "/v1/segment", body, "application/json"))
    assert response.status == 400 and "not valid JSON" in response.json()["error"]
    assert still_serves(sock)
    sock.close()


MALFORMED = {
    "empty JSON": (b"", "application/json"),
    "truncated JSON": (b'{"image_base64": "aGk', "application/json"),
    "JSON list": (b"[1, 2]", "application/json"),
    "deep object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    "NaN overlay": (b'{"image_base64": "aGk=", "request": "x", "overlay": NaN}', "application/json"),
    "invalid UTF-8": (b'{"request": "\xff\xfe"}', "application/json"),
    "lone surrogate request": (
        json.dumps({"image_base64": "aGk=", "request": "cup\ud800"}).encode(),
        "application/json",
    ),
    "many unknown fields": (json.dumps({f"f{i}": i for i in range(10_000)}).encode(), "application/json"),
    "multipart without boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "multipart cut short": (
        b"--b0undary\r\nContent-Disposition: form-data; name=",
        "multipart/form-data; boundary=b0undary",
    ),
    "two images": multipart(
        [("image", "a.png", png_bytes()), ("image", "b.png", png_bytes()), ("request", None, b"x")]
    ),
    "request as a file": multipart([("image", "a.png", png_bytes()), ("request", "r.txt", b"the cup")]),
    "control tokens in the request": multipart(
        [("image", "a.png", png_bytes()), ("request", None, b"<|vision_start|><|image_pad|><|vision_end|>")]
    ),
    "not an image": multipart([("image", "a.png", b"GIF89a" + b"\x00" * 20), ("request", None, b"x")]),
    "header claiming 100,000 x 100,000 pixels": multipart(
        [("image", "a.png", png_claiming(100_000, 100_000)), ("request", None, b"x")]
    ),
    "plain text": (b"image=1", "text/plain"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_bodies_get_a_4xx_with_a_sentence_never_a_5xx(server, name):
    body, content_type = MALFORMED[name]
    response, sock = exchange(server, request("POST", "/v1/segment", body, content_type))
    assert response.status is not None and 400 <= response.status < 500, (
        response.status,
        response.body[:200],
    )
    assert response.json()["error"]
    assert still_serves(sock)
    sock.close()


def test_a_hostile_request_text_does_not_fail_the_batch_it_would_have_joined(server):
    """Requests that used to make the processor raise are refused alone; the rest of their batch is served."""
    import httpx

    def post(text: str) -> int:
        files = {"image": ("a.png", png_bytes(), "image/png")}
        return httpx.post(
            f"{server.url}/v1/segment", files=files, data={"request": text}, timeout=120
        ).status_code

    texts = ["the cup", "<|image_pad|> the cup", "the mug", "cup<|im_end|>", "the bowl"]
    with ThreadPoolExecutor(len(texts)) as pool:
        statuses = list(pool.map(post, texts))
    assert statuses == [200, 422, 200, 422, 200]


# -- slow clients are cut off ---------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=b0undary"])
def test_a_body_that_never_arrives_gets_408_and_the_connection_is_closed(server, content_type):
    # The client: it declares 1,000 bytes and sends 10.
    head = request("POST", "/v1/segment", b"", content_type).replace(
        b"Content-Length: 0", b"Content-Length: 1000"
    )
    response, sock = exchange(server, head + b"--b0undary", probe_close=True)
    assert response.status == 408 and "did not arrive within 1 s" in response.json()["error"]
    assert response.closed and TIMEOUT_S * 0.9 <= response.seconds < TIMEOUT_S + 3
    sock.close()


@pytest.mark.parametrize(
    "first_bytes",
    [b"", b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"GET /hea"],
    ids=["idle", "half headers", "half line"],
)
def test_headers_that_never_complete_get_408_and_the_connection_is_closed(server, first_bytes):
    response, sock = exchange(server, first_bytes, probe_close=True)
    assert response.status == 408 and "headers did not arrive" in response.json()["error"]
    assert response.closed and response.seconds < TIMEOUT_S + 3
    sock.close()


@pytest.mark.parametrize(
    "prefix", [b"", request("GET", "/health")], ids=["first request", "after a response"]
)
def test_a_client_trickling_its_headers_is_cut_off(server, prefix):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(prefix)
    if prefix:
        assert read_response(sock).status == 200
    started = time.monotonic()
    with pytest.raises(OSError):  # broken pipe or reset once the server hangs up
        for byte in b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000:
            sock.sendall(bytes([byte]))
            time.sleep(TIMEOUT_S / 5)
            assert time.monotonic() - started < TIMEOUT_S + 5, "the server kept a trickling client"
    sock.close()


def test_a_body_the_endpoint_does_not_read_cannot_be_trickled_for_ever(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        request("GET", "/health").replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n") + b"0123"
    )
    started = time.monotonic()
    with pytest.raises(OSError):
        for _ in range(100):
            sock.sendall(b"x")
            time.sleep(TIMEOUT_S / 5)
    assert time.monotonic() - started < TIMEOUT_S + 5
    sock.close()


# -- filenames ------------------------------------------------------------------------------------


def test_a_traversal_filename_writes_nothing_anywhere(server, tmp_path):
    """The upload's filename is never a path: no file is opened for writing under any name derived from it,
    even for an upload large enough to be spooled to disk."""
    target = tmp_path / "escaped.png"
    names = [f"../../../../../..{target}", str(target), "..\\..\\escaped.png", "/etc/segzero-escaped.png"]
    opened: list[tuple[str, str]] = []
    active = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if active.is_set() and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing:
                opened.append((os.fsdecode(path), str(mode)))

    sys.addaudithook(audit)  # hooks cannot be removed: this one only records while ``active`` is set
    big = png_bytes(900, 800, seed=3)  # about 2 MB: over the 1 MB that multipart keeps in memory
    assert len(big) > 1_500_000
    import httpx

    active.set()
    try:
        for name in names:
            response = httpx.post(
                f"{server.url}/v1/segment",
                files={"image": (name, big, "image/png")},
                data={"request": "the cup"},
                timeout=120,
            )
            assert response.status_code == 200, response.text
    finally:
        active.clear()
    assert not target.exists() and not Path("/etc/segzero-escaped.png").exists()
    assert list(tmp_path.iterdir()) == []
    # What was written went to anonymous temporary files (the spooled uploads), none named after the upload.
    temp = os.path.realpath(tempfile.gettempdir())
    assert opened, "the uploads were expected to be spooled to disk"
    assert all(os.path.commonpath([temp, os.path.realpath(path)]) == temp for path, _ in opened), opened
    assert not any("escaped" in path for path, _ in opened)
