"""``segzero serve``: the HTTP API and web page, with request batching."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import Annotated

import typer
from rich.console import Console

from segzero.cli.app import app
from segzero.cli.options import dataclass_options, load_pipeline, model_options
from segzero.config import PipelineConfig
from segzero.serve.settings import ServeSettings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@model_options(without=("batch_size",))
@dataclass_options(ServeSettings, "settings")
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default is reachable from this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    *,
    model: PipelineConfig,
    settings: ServeSettings,
) -> None:
    """Serve POST /v1/segment, GET /health, /metrics, the web page at / and the API docs at /docs."""
    from segzero.serve.app import create_app
    from segzero.serve.server import make_server

    console = Console(stderr=True)
    if not _is_loopback(host):
        console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach this server.")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The pipeline's batch_size is the server's batch size, so one batch is one generate call.
    pipeline = load_pipeline(dataclasses.replace(model, batch_size=settings.max_batch_size))
    if settings.warmup:
        console.print("Warming up: one short request through the models before taking traffic...")

    def ready(url: str) -> None:
        console.print(f"Serving on {url} (the web page; API docs at {url}docs)", highlight=False)

    served = create_app(pipeline, settings)
    make_server(served, host=host, port=port, log_level=log_level.lower(), on_ready=ready).run()
