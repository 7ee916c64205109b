"""``segzero serve``: options reach the settings and the pipeline; loopback by default."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")

from segzero.cli import app


def test_serve_help_lists_the_settings():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--max-batch-size",
        "--max-wait-ms",
        "--queue-size",
        "--request-timeout-s",
        "--max-upload-bytes",
        "--max-pixels",
        "--max-request-chars",
        "--header-timeout-s",
        "--body-timeout-s",
        "--keep-alive-timeout-s",
        "--warmup",
        "--no-warmup",
        "--host",
        "--port",
        "127.0.0.1",
    ):
        assert option in result.output


def test_serve_builds_the_app_from_options(tiny_models, serve_calls):
    from fastapi.testclient import TestClient

    from segzero.serve.server import uvicorn_options
    args = [
        "serve",
        "--reasoner",
        str(tiny_models.reasoner),
        "--segmenter",
        str(tiny_models.segmenter),
        "--frame",
        str(tiny_models.frame),
        "--device",
        "cpu",
        "--port",
        "8123",
        "--max-batch-size",
        "3",
        "--max-wait-ms",
        "7",
        "--queue-size",
        "5",
        "--max-request-chars",
        "40",
        "--max-new-tokens",
        "4",
        "--header-timeout-s",
        "2.5",
        "--body-timeout-s",
        "30",
        "--keep-alive-timeout-s",
        "3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert serve_calls["host"] == "127.0.0.1" and serve_calls["port"] == 8123
    served = serve_calls["app"]
    assert served.state.pipeline.batch_size == 3  # one batch is one generate call
    assert served.state.pipeline.max_new_tokens == 4
    assert served.state.settings.warmup is True  # on by default
    assert served.state.settings.body_timeout_s == 30  # read by the body reader
    options = uvicorn_options(served.state.settings)  # what make_server gives uvicorn
    assert options["timeout_keep_alive"] == 3  # uvicorn's own keep-alive timer
    assert options["http"].__name__ == "HeaderTimeoutProtocol"  # the header deadline
    with TestClient(served) as client:
        health = client.get("/health").json()
    assert health["ready"] is True and health["warmup_s"] is not None
    assert health["limits"]["max_batch_size"] == 3 and health["limits"]["queue_size"] == 5
    assert health["limits"]["max_wait_ms"] == 7 and health["limits"]["max_request_chars"] == 40
    assert health["reasoner"] and health["segmenter"]


def test_serve_without_warmup(tiny_models, serve_calls):
    from fastapi.testclient import TestClient

    args = ["serve", "--reasoner", str(tiny_models.reasoner), "--segmenter", str(tiny_models.segmenter),
            "--frame", str(tiny_models.frame), "--device", "cpu", "--no-warmup"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert serve_calls["app"].state.settings.warmup is False
    with TestClient(serve_calls["app"]) as client:
        health = client.get("/health").json()
    assert health["ready"] is False and health["warmup_s"] is None and health["limits"]["warmup"] is False
