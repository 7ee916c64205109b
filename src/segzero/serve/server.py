"""Running the app under uvicorn with the timeouts that keep slow clients from pinning connections.

uvicorn closes a keep-alive connection that stays idle between requests, but it has no limit on
how long a client may take to send a request's headers: a connection that sends half a request
line, or one byte every few seconds, is held for ever, and enough of them pin the server. The
protocol built here closes such a connection with a 408 once ``header_timeout_s`` has passed
since the request's first byte (or since the connection opened). The body's own deadline,
``body_timeout_s``, is kept by the body reader (:mod:`segzero.serve.inputs`), which answers 408.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from segzero.serve.settings import ServeSettings


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that apply ``settings``' timeouts."""
    return {
        "http": header_timeout_protocol(settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
    }


def make_server(app: Any, *, host: str, port: int, log_level: str, on_ready: Callable[[str], None]) -> Any:
    """A ``uvicorn.Server`` for ``app`` with its settings' timeouts that calls ``on_ready(url)`` once it
    listens: after the app's start-up (the warm-up request), so the address is announced when a request
    sent to it will be answered. ``server.run()`` serves until interrupted.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **uvicorn_options(app.state.settings))

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                on_ready(f"http://{host}:{bound}/")

    return ReadyServer(config)


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {"error": f"The request headers did not arrive within {seconds:g} s; send the whole request at once."}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (the one ``http="auto"`` picks) with a deadline on request headers.

    A timer starts when the connection opens and again at the first byte received after a response
    was completed; if by then the protocol has not begun a new request cycle (which it does once the
    headers are complete), the client gets a 408 and the connection is closed. Bodies that an
    endpoint does not read are covered too: their bytes arrive after the response, so they start
    the timer, and no new request follows them.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    response = _timeout_response(seconds)

    class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _timed_cycle: Any = None  # the request cycle that was current when the timer started

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            between_requests = cycle is None or cycle.response_complete
            if between_requests and (self._header_timer is None or self._timed_cycle is not cycle):
                self._start_header_timer()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._timed_cycle = self.cycle
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is self._timed_cycle and not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return HeaderTimeoutProtocol


class LoopbackServer:
    """``app`` served by uvicorn on 127.0.0.1 at a free port, in a daemon thread of this process, with its
    settings' timeouts; for tests and benchmarks::

        with LoopbackServer(create_app(pipeline, settings)) as server:
            httpx.get(f"{server.url}/health")
    """

    def __init__(self, app: Any, log_level: str = "warning", start_timeout_s: float = 60.0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, **uvicorn_options(app.state.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.start_timeout_s = start_timeout_s

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.close()
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.05)
        return self

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(30)
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
