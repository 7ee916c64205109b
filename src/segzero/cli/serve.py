"""``segzero serve``: the HTTP API and web page, with request batching."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import Annotated

import typer
from rich.console import Console

from segzero.cli.app import app
from segzero.cli.options import ModelOptions, model_options
from segzero.serve.settings import ServeSettings, help_for

_D = ServeSettings()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@model_options(without=("batch_size",))
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default is reachable from this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1, help=help_for("max_batch_size"))] = _D.max_batch_size,
    max_wait_ms: Annotated[float, typer.Option(min=0, help=help_for("max_wait_ms"))] = _D.max_wait_ms,
    queue_size: Annotated[int, typer.Option(min=1, help=help_for("queue_size"))] = _D.queue_size,
    request_timeout_s: Annotated[
        float, typer.Option(min=0.001, help=help_for("request_timeout_s"))
    ] = _D.request_timeout_s,
    max_upload_bytes: Annotated[
        int, typer.Option(min=1, help=help_for("max_upload_bytes"))
    ] = _D.max_upload_bytes,
    max_request_chars: Annotated[
        int, typer.Option(min=1, help=help_for("max_request_chars"))
    ] = _D.max_request_chars,
    decode_workers: Annotated[int, typer.Option(min=1, help=help_for("decode_workers"))] = _D.decode_workers,
    header_timeout_s: Annotated[
        float, typer.Option(min=0.001, help=help_for("header_timeout_s"))
    ] = _D.header_timeout_s,
    body_timeout_s: Annotated[
        float, typer.Option(min=0.001, help=help_for("body_timeout_s"))
    ] = _D.body_timeout_s,
    keep_alive_timeout_s: Annotated[
        float, typer.Option(min=0.001, help=help_for("keep_alive_timeout_s"))
    ] = _D.keep_alive_timeout_s,
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", help=help_for("warmup"))] = _D.warmup,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    *,
    model: ModelOptions,
) -> None:
    """Serve POST /v1/segment, GET /health, /metrics, the web page at / and the API docs at /docs."""
    import uvicorn

    from segzero.serve.app import create_app
    from segzero.serve.server import uvicorn_options

    settings = ServeSettings(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        queue_size=queue_size,
        request_timeout_s=request_timeout_s,
        max_upload_bytes=max_upload_bytes,
        max_pixels=model.max_pixels,
        max_request_chars=max_request_chars,
        decode_workers=decode_workers,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        keep_alive_timeout_s=keep_alive_timeout_s,
        warmup=warmup,
    )
    console = Console(stderr=True)
    if not _is_loopback(host):
        console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach this server.")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The pipeline's batch_size is the server's batch size, so one batch is one generate call.
    pipeline = dataclasses.replace(model, batch_size=max_batch_size).load()
    console.print(f"Serving on http://{host}:{port}/ (API docs at /docs)", highlight=False)
    uvicorn.run(
        create_app(pipeline, settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        **uvicorn_options(settings),
    )
