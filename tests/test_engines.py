"""The reasoner engines' seam: options, one request built alike by every engine, and the sentences a user gets.

The openai engine against a real server (``transformers serve`` on loopback) is in test_engines_served.py.
"""

import base64
import io
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from segzero.config import PipelineConfig
from segzero.engines.openai import OpenAIEngine, chat_messages, completion_text
from segzero.errors import EngineError, InputError
from segzero.pipeline import ReasoningSegmenter
from segzero.reasoner import Reasoner, build_messages, reasoner_image


def _photo(w=90, h=60, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"engine": "tensorrt"}, "--engine 'tensorrt' is not known; choose one of: transformers, vllm, openai."),
        ({"engine": "openai"}, "--engine openai needs --reasoner-url"),
        ({"reasoner_url": "http://127.0.0.1:1/v1"}, "--reasoner-url is for --engine openai"),
        ({"vllm_args": "{}"}, "--vllm-args is for --engine vllm"),
        ({"engine": "vllm", "vllm_args": "[8192]"}, "--vllm-args must be a JSON object"),
        ({"engine": "vllm", "vllm_args": "{max_model_len: 1}"}, "--vllm-args must be a JSON object"),
        ({"engine": "vllm", "tensor_parallel_size": 0}, "--tensor-parallel-size must be a number of at least 1"),
        ({"engine": "openai", "reasoner_url": "http://h/v1", "max_in_flight": 0}, "--max-in-flight must be"),
    ],
)
def test_engine_options_that_do_not_fit_are_one_sentence(settings, says):
    with pytest.raises(InputError, match=None) as info:
        PipelineConfig(**settings)
    assert str(info.value).startswith(says) and str(info.value).endswith(".")


def test_engine_settings_are_not_run_settings_and_the_key_is_never_shown():
    config = PipelineConfig(engine="openai", reasoner_url="http://h:8000/v1", api_key="sk-secret")
    assert not {"engine", "reasoner_url", "api_key", "max_in_flight"} & set(config.run_settings())
    assert "sk-secret" not in repr(config)


def test_the_commands_take_the_engine_options():
    from typer.testing import CliRunner

    from segzero.cli.app import app

    for command in ("segment", "batch", "eval", "serve"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
        for option in ("--engine", "--reasoner-url", "--api-key", "--max-in-flight", "--tensor-parallel-size",
                       "--vllm-args"):  # fmt: skip
            assert option in out, (command, option)


# -- one request, built alike ------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_engine(tiny_models):
    return Reasoner.from_pretrained(str(tiny_models.reasoner), device="cpu", frame=tiny_models.frame)


def test_every_engine_builds_the_same_chat_and_view(transformers_engine, tiny_models):
    from segzero.engines.vllm import VLLMEngine

    photo, request = _photo(), "the red cup on the left"
    view = reasoner_image(photo, tiny_models.frame)
    vllm = VLLMEngine(None, transformers_engine.processor, frame=tiny_models.frame, name=str(tiny_models.reasoner))
    prompt = vllm.inputs(photo, request, "seg_zero")
    assert prompt["prompt"] == transformers_engine.chat_text(request, "seg_zero")
    assert np.array_equal(np.asarray(prompt["multi_modal_data"]["image"]), np.asarray(view))

    wire = chat_messages(view, request, "seg_zero", "pixels")
    ours = build_messages(request, "seg_zero", "pixels")
    assert [m["role"] for m in wire] == [m["role"] for m in ours]
    (image_part, text_part) = wire[0]["content"]
    assert text_part == ours[0]["content"][1] and ours[0]["content"][0] == {"type": "image"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (tiny_models.frame, tiny_models.frame)
    assert np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(view))  # lossless: the very pixels


def test_thinking_split_off_by_a_server_is_put_back():
    answer = "<answer>{'bbox': [1,2,3,4]}</answer>"
    assert completion_text({"content": answer, "reasoning_content": "it is red"}) == f"<think>it is red</think>{answer}"
    assert completion_text({"content": answer, "reasoning": "it is red"}) == f"<think>it is red</think>{answer}"
    whole = f"<think>kept</think>{answer}"
    assert completion_text({"content": whole, "reasoning_content": None}) == whole
    assert completion_text({"content": None}) == ""


def test_the_transformers_engine_streams_the_text_it_returns(transformers_engine):
    pieces: dict[int, list[str]] = {0: [], 1: []}
    images, requests = [_photo(), _photo(40, 70, seed=2)], ["the cup", "a much longer request about the dog"]
    out = transformers_engine.generate(
        images, requests, max_new_tokens=12, on_text=lambda i, text: pieces[i].append(text)
    )
    assert out == transformers_engine.generate(images, requests, max_new_tokens=12)
    assert ["".join(pieces[0]), "".join(pieces[1])] == out
    assert sum(len(p) for p in pieces.values()) > 2  # in pieces, as produced


def test_streaming_engine_settings_other_than_min_new_tokens_are_refused():
    from segzero.reasoner import min_new_tokens_of

    assert min_new_tokens_of("vllm", {"min_new_tokens": 5}) == 5
    with pytest.raises(InputError, match="The openai engine does not take the generation setting"):
        min_new_tokens_of("openai", {"top_p": 0.5})


# -- vLLM, where it is not installed -----------------------------------------------------------


def _vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(_vllm_installed(), reason="vLLM is installed here")
def test_a_missing_vllm_is_one_sentence_naming_the_install(tiny_models):
    with pytest.raises(EngineError) as info:
        ReasoningSegmenter.from_pretrained(str(tiny_models.reasoner), str(tiny_models.segmenter), engine="vllm")
    assert "pip install -e '.[vllm]'" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(_vllm_installed(), reason="vLLM is installed here")
def test_the_cli_says_vllm_is_missing_and_exits_2(tiny_models, tmp_path):
    _photo().save(tmp_path / "a.png")
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "a.png"), "the cup", "--engine", "vllm",
         "--reasoner", str(tiny_models.reasoner), "--segmenter", str(tiny_models.segmenter)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "pip install -e '.[vllm]'" in proc.stderr and "Traceback" not in proc.stderr


# -- servers that cannot serve -----------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    """Answers every request with the server's ``answers[(method, path)]``: ``(status, JSON body)``."""

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        status, body = self.server.answers.get((method, self.path), (404, {"detail": "Not Found"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._answer("GET")

    def do_POST(self):  # noqa: N802
        self._answer("POST")

    def log_message(self, *args):
        pass


@pytest.fixture()
def stub_server():
    """A loopback server answering as its ``answers`` say: the failures a real server can send."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _engine(url, model="tiny/reasoner", **kwargs):
    return OpenAIEngine(url, model, frame=112, coordinates="pixels", retries=1, backoff_s=0.01, **kwargs)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_sentence():
    with pytest.raises(EngineError) as info:
        _engine(f"http://127.0.0.1:{_free_port()}/v1")
    message = str(info.value)
    assert message.startswith("The reasoner server http://127.0.0.1:") and "cannot be reached" in message
    assert "--reasoner-url" in message and "\n" not in message


def test_a_server_serving_another_model_names_what_it_serves(stub_server):
    stub_server.answers[("GET", "/v1/models")] = (200, {"object": "list", "data": [{"id": "other/model"}]})
    url = f"http://127.0.0.1:{stub_server.server_port}/v1"
    with pytest.raises(EngineError, match=r"serves other/model, not tiny/reasoner; pass --reasoner"):
        _engine(url)


def test_a_refused_key_and_a_wrong_url_are_told_apart(stub_server):
    port = stub_server.server_port
    stub_server.answers[("GET", "/v1/models")] = (401, {"error": {"message": "Invalid API key"}})
    with pytest.raises(EngineError, match=r"refused the API key \(401: Invalid API key\); pass the right one"):
        _engine(f"http://127.0.0.1:{port}/v1", api_key="wrong")
    with pytest.raises(EngineError, match=r"does not answer as an OpenAI-compatible server .*ends in /v1"):
        _engine(f"http://127.0.0.1:{port}")  # GET /models is a 404 there


def test_a_server_that_rejects_images_is_one_sentence(stub_server):
    stub_server.answers[("GET", "/v1/models")] = (200, {"data": [{"id": "tiny/reasoner"}]})
    stub_server.answers[("POST", "/v1/chat/completions")] = (
        400, {"object": "error", "message": "tiny/reasoner is not a multimodal model", "code": 400},
    )  # fmt: skip
    with pytest.raises(EngineError) as info:
        _engine(f"http://127.0.0.1:{stub_server.server_port}/v1")
    message = str(info.value)
    assert "did not answer a request with an image" in message and "not a multimodal model" in message
    assert "serve a vision-language reasoner there" in message


def test_the_cli_says_the_server_is_unreachable_and_exits_2(tiny_models, tmp_path):
    _photo().save(tmp_path / "a.png")
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "a.png"), "the cup", "--engine", "openai",
         "--reasoner-url", f"http://127.0.0.1:{_free_port()}/v1", "--reasoner", str(tiny_models.reasoner),
         "--segmenter", str(tiny_models.segmenter)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot be reached" in proc.stderr and "Traceback" not in proc.stderr
