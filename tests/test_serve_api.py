"""HTTP API of ``segzero serve`` with the tiny models: answers, limits, batching, back-pressure, failures."""

from __future__ import annotations

import base64
import dataclasses
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from segzero.masks import decode_rle
from segzero.serve import ServeSettings, create_app

STATUSES = {"ok", "partial", "no_target", "no_answer", "invalid_json", "invalid_values", "runaway"}


def png_bytes(width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


class GatedPipeline:
    """The real pipeline behind a gate: each batch waits for ``gate`` (to hold the queue still).

    A batch holding a request that starts with "doomed" raises instead, as a crashing model would.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []

    def segment_batch(self, images, requests, **kwargs):
        self.batch_sizes.append(len(requests))
        self.entered.set()
        if not self.gate.wait(60):
            raise RuntimeError("the test never opened the gate")
        if any(r.startswith("doomed") for r in requests):
            raise RuntimeError("simulated CUDA out of memory")
        return self.inner.segment_batch(images, requests, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def post_image(client: TestClient, request: str = "the red square", image: bytes | None = None, **form):
    files = {"image": ("image.png", png_bytes() if image is None else image, "image/png")}
    return client.post("/v1/segment", files=files, data={"request": request, **form})


@pytest.fixture(scope="module")
def client(tiny_pipeline):
    from segzero.pipeline import ReasoningSegmenter

    # The pixel cap is the pipeline's own setting; the same models with a small cap.
    capped = dataclasses.replace(tiny_pipeline.config, max_pixels=200 * 200)
    pipeline = ReasoningSegmenter(tiny_pipeline.reasoner, tiny_pipeline.segmenter, capped)
    settings = ServeSettings(max_upload_bytes=50_000, max_request_chars=50, max_wait_ms=5)
    with TestClient(create_app(pipeline, settings)) as c:
        yield c


# -- answers ------------------------------------------------------------------------------------


def check_answer(body: dict, width: int, height: int, request: str) -> None:
    assert body["request"] == request
    assert body["status"] in STATUSES
    assert isinstance(body["reason"], str) and isinstance(body["completion"], str)
    assert body["image_size"] == [width, height]
    assert decode_rle(body["mask_rle"]).shape == (height, width)
    assert body["mask_area"] == int(decode_rle(body["mask_rle"]).sum())
    for obj in body["objects"]:
        assert obj["box"] is None or len(obj["box"]) == 4
    assert body["batch_size"] >= 1
    for stage in ("reason", "segment", "decode", "queue", "server_total"):
        assert body["timings"][stage] >= 0


def test_multipart_answer(client):
    response = post_image(client, "The red square.", png_bytes(64, 48))
    assert response.status_code == 200, response.text
    check_answer(response.json(), 64, 48, "The red square.")
    assert "overlay_png_base64" not in response.json()


def test_json_answer_with_overlay(client):
    payload = {"image_base64": base64.b64encode(png_bytes(40, 30, fmt="JPEG")).decode(), "request": "a cat"}
    response = client.post("/v1/segment", json={**payload, "overlay": True})
    assert response.status_code == 200, response.text
    body = response.json()
    check_answer(body, 40, 30, "a cat")
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"])))
    # The picture `segzero segment` writes: the 40x30 image enlarged beside its drawn twin, text below.
    from segzero.drawing import display_size

    shown = display_size((40, 30))
    assert overlay.format == "PNG" and overlay.width > 2 * shown[0] and overlay.height > shown[1]


def read_events(response) -> list[tuple[str, dict]]:
    """The server-sent events of a response body, in order: ``(name, data)``."""
    import json

    events = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_the_stream_sends_the_text_as_written_then_the_result(client):
    files = {"image": ("image.png", png_bytes(40, 30), "image/png")}
    # The tiny reasoner writes a newline a token: 8 tokens, so 8 pieces.
    response = client.post("/v1/segment/stream", files=files, data={"request": "the cup", "overlay": "true"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = read_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"text"} and len(names) > 4, names
    body = events[-1][1]
    check_answer(body, 40, 30, "the cup")
    assert "".join(data["text"] for name, data in events[:-1]) == body["completion"]
    assert body["overlay_png_base64"]


def test_the_stream_keeps_the_limits(client):
    # Bad input is refused with its usual status before any stream starts.
    big = {"image": ("image.png", png_bytes(300, 300), "image/png")}
    response = client.post("/v1/segment/stream", files=big, data={"request": "a cat"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["error"]
    response = client.post("/v1/segment/stream", json={"image_base64": "", "request": "a cat"})
    assert response.status_code in (400, 422) and response.json()["error"]
    files = {"image": ("image.png", png_bytes(), "image/png")}
    response = client.post("/v1/segment/stream", files=files, data={"request": "x" * 51})
    assert response.status_code == 422


def test_multipart_overlay_and_data_url(client):
    response = post_image(client, "a dog", overlay="true")
    assert response.status_code == 200 and "overlay_png_base64" in response.json()
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes(20, 20)).decode()
    response = client.post("/v1/segment", json={"image_base64": data_url, "request": "a dog"})
    assert response.status_code == 200 and response.json()["image_size"] == [20, 20]


def test_examples_suit_the_loaded_models(client, tiny_pipeline):
    from segzero.serve.examples import PHOTO_REQUEST, page_examples
    from segzero.shapeworld.demo import shipped_models

    # Models of photographs: the paper's request, no images.
    assert client.get("/examples").json() == {"request": PHOTO_REQUEST, "images": []}
    assert client.get("/examples/0.png").status_code == 404
    # The shipped ShapeWorld models: held-out scenes, each with a request of its own.
    with TestClient(create_app(tiny_pipeline, ServeSettings(warmup=False), page_examples(str(shipped_models()[0])))) as sw:
        examples = sw.get("/examples").json()
        assert examples["request"] == "the shape that would roll away if pushed"
        assert [e["url"] for e in examples["images"]] == [f"/examples/{n}.png" for n in range(4)]
        assert all(e["request"] for e in examples["images"])
        image = sw.get("/examples/0.png")
        assert image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (112, 112)


def test_serving_is_announced_once_the_warm_up_is_done(tiny_pipeline):
    import httpx

    from segzero.serve.server import make_server

    app = create_app(tiny_pipeline, ServeSettings(max_batch_size=2))
    announced = []
    server = make_server(app, host="127.0.0.1", port=0, log_level="warning",
                         on_ready=lambda url: announced.append((url, app.state.warmup_s)))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: announced or not thread.is_alive(), timeout=120)
        [(url, warmup_s)] = announced
        assert warmup_s is not None  # the warm-up had finished when the address was printed
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        assert httpx.get(url + "health").json()["ready"] is True
    finally:
        server.should_exit = True
        thread.join(30)


def test_health_metrics_docs(client, tiny_pipeline):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["reasoner"] == tiny_pipeline.reasoner.name
    assert health["segmenter"] == tiny_pipeline.segmenter.name
    assert health["queue_depth"] == 0 and health["batches_served"] >= 1
    assert health["limits"]["max_request_chars"] == 50
    metrics = client.get("/metrics").json()
    assert sum(metrics["batch_size_histogram"].values()) == metrics["batches"]
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert {"413", "415", "422", "503", "504"} <= set(spec["paths"]["/v1/segment"]["post"]["responses"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "segment-form" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/nowhere").json()["error"].startswith("There is nothing at /nowhere")


# -- start-up warm-up ------------------------------------------------------------------------------


class CountingPipeline:
    """The real pipeline, recording each ``segment_batch`` call's requests and keyword arguments."""

    def __init__(self, inner, fail: bool = False) -> None:
        self.inner, self.fail = inner, fail
        self.calls: list[tuple[list[str], dict]] = []

    def segment_batch(self, images, requests, **kwargs):
        self.calls.append((list(requests), kwargs))
        if self.fail:
            raise RuntimeError("simulated CUDA out of memory")
        return self.inner.segment_batch(images, requests, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_warmup_runs_one_short_request_before_traffic(tiny_pipeline):
    from segzero.serve.app import WARMUP_REQUEST, WARMUP_TOKENS

    counting = CountingPipeline(tiny_pipeline)
    with TestClient(create_app(counting, ServeSettings(max_wait_ms=5))) as client:
        # Start-up is over when the client is: the warm-up has run, before any request.
        assert counting.calls == [([WARMUP_REQUEST], {"max_new_tokens": WARMUP_TOKENS})]
        health = client.get("/health").json()
        assert health["ready"] is True and health["warmup_s"] > 0
        assert health["batches_served"] == 0 and health["requests_served"] == 0  # not counted as traffic
        assert post_image(client, "the red square").status_code == 200
        assert counting.calls[1] == (["the red square"], {})  # real requests: the pipeline's own budget


def test_without_warmup_the_model_is_ready_after_its_first_batch(tiny_pipeline):
    counting = CountingPipeline(tiny_pipeline)
    with TestClient(create_app(counting, ServeSettings(max_wait_ms=5, warmup=False))) as client:
        health = client.get("/health").json()
        assert health["ready"] is False and health["warmup_s"] is None and counting.calls == []
        assert post_image(client).status_code == 200
        assert client.get("/health").json()["ready"] is True


def test_a_failed_warmup_stops_the_start(tiny_pipeline):
    from segzero.serve.app import WarmupError

    app = create_app(CountingPipeline(tiny_pipeline, fail=True), ServeSettings())
    with pytest.raises(WarmupError, match="warm-up request failed.*simulated CUDA out of memory.*--device"):
        with TestClient(app):
            pass


# -- limits: each refused before anything reaches the model ---------------------------------------


def truncated_png() -> bytes:
    data = png_bytes(64, 64)
    return data[: len(data) // 2]


def big_image() -> bytes:
    return png_bytes(120, 120)  # about 43 kB of noise: under the upload limit of 50 kB


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"image": png_bytes(300, 300)}, 413, "larger than the limit"),  # noise PNG of ~270 kB
        ({"image": png_bytes(250, 250, fmt="JPEG")}, 413, "pixels, over the limit"),  # small file, 62,500 px
        ({"image": b"just some text, not an image"}, 415, "not a supported image"),
        ({"image": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"}, 415, "not a supported image"),
        ({"image": truncated_png()}, 422, "could not be decoded"),
        ({"image": b""}, 422, "empty"),
        ({"request": "   "}, 422, "empty"),
        ({"request": "..."}, 422, "empty"),
        ({"request": "x" * 51}, 422, "over the limit of 50"),
    ],
)
def test_multipart_limits(client, kwargs, status, words):
    before = client.get("/metrics").json()
    response = post_image(client, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert set(response.json()) == {"error"}
    after = client.get("/metrics").json()
    assert after["requests"] == before["requests"]  # nothing was queued


def test_big_but_allowed_image_passes(client):
    data = big_image()
    assert 40_000 < len(data) < 50_000
    assert post_image(client, image=data).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"image_base64": "AAAA", "request": ', 400, "not valid JSON"),
        (b'{"image_base64": "not base64 at all!", "request": "cat"}', 400, "not valid base64"),
        (b'["a", "list"]', 422, "must be an object"),
        (b'{"request": "cat"}', 422, "'image_base64' is missing"),
        (b'{"image_base64": "AAAA"}', 422, "'request' is missing"),
        (b'{"image_base64": "AAAA", "request": 7}', 422, "must be text"),
        (b'{"image_path": "/etc/passwd", "request": "cat"}', 422, "does not read paths or URLs"),
        (b'{"image_url": "http://example.com/a.png", "request": "cat"}', 422, "does not read paths or URLs"),
        (b'{"image_base64": "AAAA", "request": "cat", "overlay": "maybe"}', 422, "'overlay' must be"),
    ],
)
def test_json_errors(client, body, status, words):
    response = client.post("/v1/segment", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_other_content_types_and_fields(client):
    response = client.post("/v1/segment", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]
    response = client.post("/v1/segment", data={"request": "cat", "image": "/etc/passwd"})
    assert response.status_code == 415  # urlencoded form: no file, no path reading
    files = {"image": ("a.png", png_bytes(), "image/png")}
    response = client.post("/v1/segment", files=files, data={"request": "cat", "path": "/etc/passwd"})
    assert response.status_code == 422 and "does not read paths" in response.json()["error"]
    assert "Unknown form field(s) path: send the image bytes as the file 'image'" in response.json()["error"]
    response = client.post(
        "/v1/segment", files={"other": ("a.png", png_bytes(), "image/png")}, data={"request": "x"}
    )
    assert response.status_code == 422
    response = post_image(client, overlay="perhaps")
    assert response.status_code == 422 and "'overlay' must be" in response.json()["error"]
    assert client.get("/v1/segment").status_code == 405


def test_size_limit_enforced_while_streaming(client):
    """A body sent without Content-Length is cut off at the limit, not buffered whole first."""
    sent = []

    def chunks():
        for _ in range(200):  # 200 x 10 kB, far over the 50 kB limit
            sent.append(1)
            yield b"x" * 10_000

    response = client.post("/v1/segment", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["error"]
    huge = base64.b64encode(b"\0" * 60_000).decode()
    response = client.post("/v1/segment", json={"image_base64": huge, "request": "cat"})
    assert response.status_code == 413


# -- batching, back-pressure, failures ---------------------------------------------------------


@pytest.fixture
def gated(tiny_pipeline):
    gated = GatedPipeline(tiny_pipeline)
    yield gated
    gated.gate.set()  # never leave the worker thread blocked


def gated_client(gated, **settings):
    # No warm-up: the gate would hold it, and these tests count the batches the model sees.
    return TestClient(create_app(gated, ServeSettings(**{"max_wait_ms": 5, "warmup": False, **settings})))


def hold_model(pool, client, gated, request: str = "first"):
    """Send ``request`` and wait until its batch (of one) holds the gated model; return its future."""
    future = pool.submit(post_image, client, request)
    assert gated.entered.wait(20)
    return future


def wait_queued(client, n: int) -> None:
    """Wait until ``n`` requests wait for a batch behind the running one."""
    wait_until(lambda: client.app.state.batcher.queue_depth == n)


def test_concurrent_requests_are_batched(gated):
    with gated_client(gated, max_batch_size=4, queue_size=8) as client, ThreadPoolExecutor(6) as pool:
        first = hold_model(pool, client, gated)
        others = [
            pool.submit(post_image, client, f"request {i}", png_bytes(30 + i, 20, seed=i)) for i in range(4)
        ]
        wait_queued(client, 4)
        health = client.get("/health").json()  # the event loop answers while the model is busy
        assert health["queue_depth"] == 4 and health["running"] == 1
        gated.gate.set()
        assert first.result().status_code == 200
        for i, future in enumerate(others):
            response = future.result()
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["request"] == f"request {i}"  # routed back right
            assert body["image_size"] == [30 + i, 20]
            assert body["batch_size"] == 4
        assert gated.batch_sizes == [1, 4]
        metrics = client.get("/metrics").json()
        assert metrics["batch_size_histogram"] == {"1": 1, "4": 1}
        assert metrics["batches"] == 2 and metrics["requests"] == 5


def test_full_queue_answers_503(gated):
    with gated_client(gated, max_batch_size=1, queue_size=1) as client, ThreadPoolExecutor(3) as pool:
        running = hold_model(pool, client, gated, "running")
        waiting = pool.submit(post_image, client, "waiting")
        wait_queued(client, 1)
        refused = post_image(client, "refused")
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "busy" in refused.json()["error"]
        gated.gate.set()
        assert running.result().status_code == 200 and waiting.result().status_code == 200
        assert client.get("/metrics").json()["rejected_queue_full"] == 1
        assert post_image(client, "after").status_code == 200


def test_timeout_answers_504_and_server_recovers(gated):
    with gated_client(gated, max_batch_size=2, request_timeout_s=0.5) as client:
        response = post_image(client, "slow")
        assert response.status_code == 504 and "No answer within 0.5 s" in response.json()["error"]
        assert client.get("/metrics").json()["timed_out"] == 1
        gated.gate.set()
        wait_until(lambda: client.app.state.batcher.running == 0)
        assert post_image(client, "fast again").status_code == 200


def test_a_stream_that_times_out_ends_in_a_504_event(gated):
    with gated_client(gated, max_batch_size=2, request_timeout_s=0.5) as client:
        files = {"image": ("image.png", png_bytes(), "image/png")}
        response = client.post("/v1/segment/stream", files=files, data={"request": "slow"})
        assert response.status_code == 200
        (name, data), = read_events(response)
        assert name == "error" and data["status"] == 504 and "No answer within 0.5 s" in data["error"]
        gated.gate.set()
        wait_until(lambda: client.app.state.batcher.running == 0)


def test_bad_requests_do_not_disturb_good_ones(gated):
    with gated_client(gated, max_batch_size=4, queue_size=8) as client, ThreadPoolExecutor(6) as pool:
        first = hold_model(pool, client, gated)
        good = [pool.submit(post_image, client, f"good {i}") for i in range(3)]
        wait_queued(client, 3)
        # Bad requests are answered at once, while the good ones still wait for the model.
        assert post_image(client, image=b"GIF89a broken").status_code in (415, 422)
        assert post_image(client, image=b"not an image").status_code == 415
        assert post_image(client, "").status_code == 422
        assert client.app.state.batcher.queue_depth == 3
        gated.gate.set()
        assert first.result().status_code == 200
        assert [f.result().status_code for f in good] == [200, 200, 200]
        assert gated.batch_sizes == [1, 3]


def test_failed_batch_fails_only_its_requests(gated):
    with gated_client(gated, max_batch_size=2, queue_size=8) as client, ThreadPoolExecutor(4) as pool:
        first = hold_model(pool, client, gated)
        doomed = [pool.submit(post_image, client, f"doomed {i}") for i in range(2)]
        wait_queued(client, 2)
        after = pool.submit(post_image, client, "after")  # queued behind the doomed batch
        wait_queued(client, 3)
        gated.gate.set()
        assert first.result().status_code == 200
        for future in doomed:
            response = future.result()
            assert response.status_code == 500
            assert "simulated CUDA out of memory" in response.json()["error"]
        assert after.result().status_code == 200
        assert gated.batch_sizes == [1, 2, 1]
        metrics = client.get("/metrics").json()
        assert metrics["failed_batches"] == 1 and metrics["batches"] == 2
        assert post_image(client, "later").status_code == 200
