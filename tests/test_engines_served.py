"""The openai engine end to end against real OpenAI-compatible servers: ``transformers serve`` started here on
loopback, serving the tiny reasoners on the CPU. Nothing is canned: every completion is the model's.

Starting ``transformers serve`` (a process that spawns the model's own process) takes about a minute on two
CPU cores, so the module is ``slow``; the two servers it needs start side by side, once.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.pipeline import ReasoningSegmenter
from tests.conftest import TAUGHT_FRAME

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Served:
    """``transformers serve MODEL`` on a free loopback port, in its own process group."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model = str(model)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        command = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                   self.model, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"transformers serve not ready after {STARTUP_TIMEOUT_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(20)


@pytest.fixture(scope="module")
def loud_models(tiny_models, tmp_path_factory):
    """The tiny random reasoner with its weight matrices scaled by 10, beside the tiny segmenter.

    At their initial scale tiny random reasoners answer newlines whatever they are shown; scaled up, the
    greedy text depends on every token of the chat and every pixel of the view.
    """
    import shutil

    import torch

    from segzero.reasoner import Reasoner
    from segzero.tiny import TinyModels

    folder = tmp_path_factory.mktemp("loud") / "reasoner"
    shutil.copytree(tiny_models.reasoner, folder)
    model = Reasoner.from_pretrained(str(folder), device="cpu", frame=tiny_models.frame).model
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() >= 2:
                weight.mul_(10)
    model.save_pretrained(folder)
    return TinyModels(folder, tiny_models.segmenter, tiny_models.frame)


@pytest.fixture(scope="module")
def servers(loud_models, taught_models, tmp_path_factory):
    """``transformers serve`` for the loud random reasoner and for the taught one, started together."""
    logs = tmp_path_factory.mktemp("serve-logs")
    started = {"random": _Served(loud_models.reasoner, logs / "random.log"),
               "taught": _Served(taught_models.reasoner, logs / "taught.log")}  # fmt: skip
    try:
        for served in started.values():
            served.wait_ready()
        yield started
    finally:
        for served in started.values():
            served.stop()


def _photo(w=160, h=120, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _remote(models, url, frame=TAUGHT_FRAME, **settings):
    """The pipeline on ``models`` with its reasoner asked at ``url`` (the openai engine)."""
    return ReasoningSegmenter.from_pretrained(
        str(models.reasoner), str(models.segmenter), engine="openai", reasoner_url=url, device="cpu", frame=frame,
        **settings,
    )  # fmt: skip


def _pipes(models, served, frame, **settings):
    """The in-process pipeline (one request per generate call: no padding) and the one asking ``served``."""
    local = ReasoningSegmenter.from_pretrained(
        str(models.reasoner), str(models.segmenter), batch_size=1, device="cpu", frame=frame, **settings
    )
    return local, _remote(models, served.url, frame, **settings)


#: Special tokens such as ``<|im_start|>``: transformers serve leaves those a random model writes in the
#: content, where generate's decoding drops them (it also trims the content's ends).
SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")


def test_greedy_completions_match_the_in_process_engine(servers, loud_models):
    """The loud reasoner's greedy text depends on every token of the chat and every pixel of the view, so equal
    completions mean both engines built the same request."""
    local, remote = _pipes(loud_models, servers["random"], loud_models.frame, max_new_tokens=24)
    photo = _photo(seed=2)
    images = [_photo(), _photo(70, 90, seed=1), photo, photo]
    requests = ["the cup", "what can I use to cut the bread?", "the dog on the left", "the cup"]
    try:
        here = [r.completion.strip() for r in local.segment_batch(images, requests)]
        there = [SPECIAL_TOKEN.sub("", r.completion).strip() for r in remote.segment_batch(images, requests)]
    finally:
        remote.close()
    assert there == here
    assert len(set(here)) == 4  # every image and every request reaches the model


def test_masks_match_the_in_process_engine(servers, taught_models):
    local, remote = _pipes(taught_models, servers["taught"], TAUGHT_FRAME, max_new_tokens=64)
    a, b = _photo(), _photo(80, 60, seed=3)
    images, requests = [a, b, a], ["the cup", "the dog", "the knife"]
    try:
        here = local.segment_batch(images, requests)
        there = remote.segment_batch(images, requests)
    finally:
        remote.close()
    for mine, theirs in zip(here, there):
        assert theirs.status.value == "ok" and theirs.error is None
        assert theirs.thinking == mine.thinking == "it is on the left"  # rebuilt from reasoning_content
        assert theirs.completion == mine.completion
        assert theirs.mask.any() and np.array_equal(theirs.mask, mine.mask)
        assert theirs.objects == mine.objects


def test_streamed_pieces_join_into_the_completion(servers, taught_models):
    _, remote = _pipes(taught_models, servers["taught"], TAUGHT_FRAME, max_new_tokens=64)
    pieces: dict[int, list[str]] = {0: [], 1: []}
    try:
        results = remote.segment_batch(
            [_photo(), _photo(seed=4)], ["the cup", "the dog"], on_text=lambda i, text: pieces[i].append(text)
        )
    finally:
        remote.close()
    for i, result in enumerate(results):
        assert "".join(pieces[i]) == result.completion and len(pieces[i]) > 5
        assert pieces[i][0].startswith("<think>")


class _Flaky(BaseHTTPRequestHandler):
    """A proxy to a real server: chat requests first meet the statuses in ``server.fail`` (one each), then get the
    server's own answer; it counts the chat requests in flight at once."""

    def do_GET(self):  # noqa: N802
        self._relay("GET", b"")

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            status = self.server.fail.pop(0) if self.server.fail else None
            self.server.in_flight += 1
            self.server.most = max(self.server.most, self.server.in_flight)
        try:
            if status is not None:
                self._send(status, b'{"error": {"message": "busy"}}', {"Retry-After": "0"} if status == 429 else {})
            else:
                self._relay("POST", body)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _relay(self, method, body):
        answer = httpx.request(method, self.server.upstream + self.path, content=body,
                               headers={"content-type": "application/json"}, timeout=300)  # fmt: skip
        self._send(answer.status_code, answer.content, {"content-type": answer.headers.get("content-type", "")})

    def _send(self, status, data, headers):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def flaky(servers):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    proxy.upstream = f"http://127.0.0.1:{servers['taught'].port}"
    proxy.fail, proxy.lock, proxy.in_flight, proxy.most = [], threading.Lock(), 0, 0
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_busy_and_failing_servers_are_retried_and_a_lost_request_is_recorded(flaky, servers, taught_models):
    from segzero import defaults

    url = f"http://127.0.0.1:{flaky.server_port}/v1"
    remote = _remote(taught_models, url, max_new_tokens=64, max_in_flight=1)
    remote.reasoner.backoff_s = 0.01
    try:
        flaky.fail[:] = [503, 429, 502]  # one request, tried four times
        (ok,) = remote.segment_batch([_photo()], ["the cup"])
        assert ok.error is None and ok.status.value == "ok"
        # Requests go one at a time (max_in_flight 1): the first uses up all its tries, the second is answered.
        flaky.fail[:] = [503] * (defaults.ENGINE_RETRIES + 1)
        lost, kept = remote.segment_batch([_photo(), _photo(seed=5)], ["the cup", "the dog"])
    finally:
        remote.close()
    assert lost.error is not None and f"failed on this request {defaults.ENGINE_RETRIES + 1} times" in lost.error
    assert "503: busy" in lost.error and not lost.mask.any() and lost.status.value == "no_answer"
    assert kept.error is None and kept.status.value == "ok" and kept.mask.any()


def test_requests_in_flight_are_bounded(flaky, taught_models):
    url = f"http://127.0.0.1:{flaky.server_port}/v1"
    remote = _remote(taught_models, url, max_new_tokens=64, max_in_flight=2)
    try:
        results = remote.segment_batch([_photo(seed=s) for s in range(6)], ["the cup"] * 6)
    finally:
        remote.close()
    assert all(r.status.value == "ok" for r in results)
    assert flaky.most == 2  # concurrent, and never more than asked


def test_segment_and_batch_commands_through_a_server(servers, taught_models, tmp_path):
    from segzero.cli.app import app

    photo = tmp_path / "kitchen.png"
    _photo().save(photo)
    engine = ["--engine", "openai", "--reasoner-url", servers["taught"].url, "--reasoner", str(taught_models.reasoner),
              "--segmenter", str(taught_models.segmenter), "--frame", str(TAUGHT_FRAME), "--device", "cpu",
              "--max-new-tokens", "64"]  # fmt: skip
    res = CliRunner().invoke(app, ["segment", str(photo), "the cup", "--out", str(tmp_path / "one"), *engine])
    assert res.exit_code == 0, res.output
    assert "Thinking: it is on the left" in res.output
    lines = [{"image": "kitchen.png", "request": r} for r in ("the cup", "the dog", "the knife")]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    res = CliRunner().invoke(app, ["batch", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "many"), *engine])
    assert res.exit_code == 0, res.output
    assert "3 segmented (0 without a usable answer)" in res.output
    records = [json.loads(line) for line in (tmp_path / "many" / "results.jsonl").read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in records] == [(1, "ok"), (2, "ok"), (3, "ok")]


def test_the_server_hands_each_request_to_the_engine_as_it_comes(flaky, taught_models):
    """``segzero serve`` on the openai engine: no batches, each request answered when done; a request the
    reasoner server keeps failing gets a 502 and the others are answered."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from segzero.serve import ServeSettings, create_app

    url = f"http://127.0.0.1:{flaky.server_port}/v1"
    remote = _remote(taught_models, url, max_new_tokens=64, max_in_flight=4)
    remote.reasoner.backoff_s = 0.01

    def post(client, seed):
        buffer = io.BytesIO()
        _photo(seed=seed).save(buffer, format="PNG")
        return client.post("/v1/segment", files={"image": ("a.png", buffer.getvalue(), "image/png")},
                           data={"request": "the cup"})  # fmt: skip

    try:
        with TestClient(create_app(remote, ServeSettings(max_batch_size=4, warmup=False))) as client:
            assert client.get("/health").json()["engine"] == "openai"
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda seed: post(client, seed), range(4)))
            from segzero import defaults

            flaky.fail[:] = [500] * (defaults.ENGINE_RETRIES + 1)
            lost = post(client, 9)
            metrics = client.get("/metrics").json()
    finally:
        remote.close()
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["thinking"] == "it is on the left" and a.json()["mask_area"] > 0 for a in answers)
    assert max(a.json()["batch_size"] for a in answers) > 1  # several in the reasoner at once
    assert lost.status_code == 502 and "The reasoner gave no answer" in lost.json()["error"]
    assert flaky.most > 1 and metrics["requests"] == 5
