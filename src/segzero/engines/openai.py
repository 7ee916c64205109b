"""The openai engine: the reasoner behind any OpenAI-compatible chat-completions server that takes images.

``vllm serve``, SGLang and ``transformers serve`` all answer ``POST {url}/chat/completions``; one URL may
front many GPUs (tensor parallelism, replicas behind a balancer) while the segmenter stays local. Each
request is the conversation of :func:`segzero.reasoner.build_messages` with the image already resized to
the reasoner's view (:func:`segzero.reasoner.reasoner_image`; a server would resize it its own way), sent
as a lossless PNG, decoded greedily (``temperature: 0``).

Requests go out concurrently, at most ``max_in_flight`` at once. One that meets a 429, a 5xx, a timeout or
a lost connection is tried again after ``backoff_s``, then twice that, and so on (a ``Retry-After`` the
server sends is honoured), ``retries`` times; then it fails alone with
:class:`~segzero.errors.ReasonerRequestError`. At start the engine checks, in one sentence each, that the
server is reachable, takes the key, serves the model under the name asked for, and takes an image.

Servers that split the thinking off (``reasoning_content``, or ``reasoning``: ``transformers serve``, and
vLLM or SGLang with a reasoning parser) get it put back as ``<think>...</think>`` before the answer, so the
completion parses as the model wrote it. The client is httpx (``pip install -e '.[openai]'``): the engine
needs only the HTTP calls, and keeps the retry policy and its messages in its own hands.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PIL import Image

from segzero.defaults import (
    DEFAULT_PROMPT,
    ENGINE_BACKOFF_S,
    ENGINE_RETRIES,
    ENGINE_TIMEOUT_S,
    MAX_IN_FLIGHT,
    MAX_NEW_TOKENS,
)
from segzero.errors import EngineError, ReasonerRequestError
from segzero.prompts import PromptVariant
from segzero.reasoner import ReasonerEngine, build_messages, min_new_tokens_of, reasoner_image
from segzero.runaway import runaway_reason

if TYPE_CHECKING:
    from segzero.config import PipelineConfig

#: Answers worth trying again: the server is busy or failed for the moment.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: The longest wait between two tries, whatever ``Retry-After`` says.
MAX_WAIT_S = 60.0


def image_url(image: Image.Image) -> str:
    """``image`` as a ``data:image/png;base64,...`` URL (lossless, so the server sees the very pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(view: Image.Image, request: str, prompt: str | PromptVariant, coordinates: str) -> list[dict]:
    """:func:`~segzero.reasoner.build_messages` in the chat-completions wire format, the view in its image slot."""
    messages = build_messages(request, prompt, coordinates)
    for message in messages:
        message["content"] = [
            {"type": "image_url", "image_url": {"url": image_url(view)}} if part["type"] == "image" else part
            for part in message["content"]
        ]
    return messages


def completion_text(message: dict[str, Any]) -> str:
    """The completion as the model wrote it, from a chat-completions ``message`` (or a stream's joined deltas):
    thinking the server split off (``reasoning_content`` or ``reasoning``) is put back as ``<think>...</think>``."""
    content = message.get("content") or ""
    thinking = message.get("reasoning_content") or message.get("reasoning")
    if thinking and "<think>" not in content:
        return f"<think>{thinking}</think>{content}"
    return content


def _detail(response: Any) -> str:
    """What a failed answer says, in one line."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200] or response.reason_phrase
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return " ".join(str(error).split())[:200]


class _Retry(Exception):
    """A try that may succeed later; ``wait_s`` is the server's ``Retry-After``, if it sent one."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.wait_s = wait_s


class OpenAIEngine(ReasonerEngine):
    """A reasoner served by an OpenAI-compatible server (see the module docstring).

    Args:
        url: the server's base URL, ending where ``/chat/completions`` and ``/models`` hang, e.g.
            ``http://host:8000/v1``.
        model: the name the server serves the reasoner under (sent with every request).
        frame / coordinates: the reasoner's view side and coordinate convention.
        api_key: sent as ``Authorization: Bearer``; None sends none.
        max_in_flight: most requests sent at once.
        timeout_s / retries / backoff_s: see the module docstring.
        check: check the server at once (reachable, key, model, images).

    Raises:
        EngineError: httpx is not installed, or the check failed.
    """

    engine = "openai"
    streams = True

    def __init__(
        self,
        url: str,
        model: str,
        *,
        frame: int,
        coordinates: str,
        api_key: str | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout_s: float = ENGINE_TIMEOUT_S,
        retries: int = ENGINE_RETRIES,
        backoff_s: float = ENGINE_BACKOFF_S,
        check: bool = True,
    ) -> None:
        super().__init__(frame=frame, coordinates=coordinates, name=model)
        try:
            import httpx
        except ImportError:
            raise EngineError(
                "The openai engine needs httpx, which is not installed; install it with pip install -e '.[openai]'."
            ) from None
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_in_flight = max_in_flight
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
        )
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="segzero-openai")
        if check:
            try:
                self.check()
            except BaseException:
                self.close()
                raise

    @classmethod
    def from_config(cls, config: PipelineConfig) -> OpenAIEngine:
        """The engine ``config`` describes (resolved: frame and coordinates filled in where the model says).

        Raises:
            EngineError: the reasoner's coordinate convention is unknown here (its config cannot be read and
                ``--coordinates`` was not given), or the server check failed.
        """
        if config.coordinates is None:
            raise EngineError(
                f"The coordinate convention of {config.reasoner} is not known here (no readable config.json); "
                "pass --coordinates pixels (Qwen2/2.5-VL) or relative (Qwen3-VL)."
            )
        return cls(
            config.reasoner_url, config.reasoner, frame=config.frame, coordinates=config.coordinates,
            api_key=config.api_key or os.environ.get("OPENAI_API_KEY") or None,
            max_in_flight=config.max_in_flight,
        )  # fmt: skip

    # -- checks ------------------------------------------------------------------------------

    def check(self) -> None:
        """Check that the server is reachable, takes the key, serves :attr:`name` and takes an image.

        Raises:
            EngineError: saying which of these failed and what to do.
        """
        import httpx

        try:
            response = self._client.get("/models")
        except httpx.HTTPError as exc:
            raise EngineError(
                f"The reasoner server {self.url} cannot be reached ({type(exc).__name__}: {exc}); start it "
                f"(e.g. vllm serve {self.name}) or correct --reasoner-url."
            ) from None
        if response.status_code in (401, 403):
            raise EngineError(
                f"The reasoner server {self.url} refused the API key ({response.status_code}: {_detail(response)}); "
                "pass the right one with --api-key or $OPENAI_API_KEY."
            )
        try:
            served = [m["id"] for m in response.json()["data"]] if response.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            served = None
        if served is None:
            raise EngineError(
                f"{self.url} does not answer as an OpenAI-compatible server (GET /models: {response.status_code}); "
                "give its base URL, which usually ends in /v1."
            )
        if self.name not in served:
            raise EngineError(
                f"The reasoner server {self.url} serves {', '.join(served) or 'no model'}, not {self.name}; "
                "pass --reasoner with the name it serves."
            )
        probe = Image.new("RGB", (self.frame, self.frame), (128, 128, 128))
        try:
            self._complete(probe, "the object in the middle", DEFAULT_PROMPT, 1, None, {})
        except ReasonerRequestError as exc:
            raise EngineError(
                f"The reasoner server {self.url} did not answer a request with an image ({exc}); serve a "
                "vision-language reasoner there."
            ) from None

    # -- requests ----------------------------------------------------------------------------

    def submit(
        self,
        image: Image.Image,
        request: str,
        *,
        prompt: str | PromptVariant = DEFAULT_PROMPT,
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_text: Callable[[str], None] | None = None,
        stop_runaway: bool = False,
        **generate_kwargs: Any,
    ) -> Future[str]:
        """Send one request (see :meth:`ReasonerEngine.submit`); it streams (``stream: true``) when ``on_text``
        is given or ``stop_runaway`` is on: then the stream is closed as soon as the text runs away (the
        server stops generating when its client goes, as vLLM and SGLang do), and the completion is the text
        up to there. ``min_new_tokens``, the one generation setting taken beside ``max_new_tokens``, is sent
        as ``min_tokens``, which vLLM and SGLang take.

        Raises:
            InputError: another generation setting.
        """
        min_new_tokens = min_new_tokens_of(self.engine, generate_kwargs)
        extra = {"min_tokens": min_new_tokens} if min_new_tokens else {}
        return self._pool.submit(
            self._complete, image, request, prompt, max_new_tokens, on_text, extra, stop_runaway
        )

    def _complete(
        self,
        image: Image.Image,
        request: str,
        prompt: str | PromptVariant,
        max_new_tokens: int,
        on_text: Callable[[str], None] | None,
        extra: dict[str, Any],
        stop_runaway: bool = False,
    ) -> str:
        """One request, tried again on passing failures; its completion.

        Raises:
            ReasonerRequestError: the server refused it, or failed on it ``retries + 1`` times.
        """
        body = {
            "model": self.name,
            "messages": chat_messages(reasoner_image(image, self.frame), request, prompt, self.coordinates),
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            **extra,
        }
        sent = [0]  # characters already handed to on_text: a try after a cut stream repeats them
        for attempt in range(self.retries + 1):
            try:
                if on_text is None and not stop_runaway:
                    return self._post(body)
                return self._stream(body, on_text or _ignore, sent, stop_runaway)
            except _Retry as failure:
                if attempt == self.retries:
                    raise ReasonerRequestError(
                        f"the reasoner server failed on this request {attempt + 1} times (last: {failure})"
                    ) from None
                wait = self.backoff_s * 2**attempt * (1 + 0.25 * random.random())
                time.sleep(min(failure.wait_s if failure.wait_s is not None else wait, MAX_WAIT_S))
        raise AssertionError("unreachable")

    def _post(self, body: dict[str, Any]) -> str:
        import httpx

        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        self._raise_for(response)
        try:
            return completion_text(response.json()["choices"][0]["message"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ReasonerRequestError(f"the reasoner server sent an answer without a message: {_detail(response)}")

    def _stream(
        self, body: dict[str, Any], on_text: Callable[[str], None], sent: list[int], stop_runaway: bool = False
    ) -> str:
        """The request as server-sent events, each new piece handed to ``on_text`` (thinking inside
        ``<think>``); with ``stop_runaway``, closed as soon as the text runs away."""
        import httpx

        message = {"content": "", "reasoning_content": ""}
        try:
            with self._client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
                if response.status_code != 200:
                    response.read()
                    self._raise_for(response)
                for line in response.iter_lines():
                    data = line[5:].strip() if line.startswith("data:") else ""
                    if not data or data == "[DONE]":
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise ReasonerRequestError(f"the reasoner server failed mid-answer: {chunk['error']}")
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        message["content"] += delta.get("content") or ""
                        message["reasoning_content"] += delta.get("reasoning_content") or delta.get("reasoning") or ""
                    text = _streamed_text(message)
                    if len(text) > sent[0]:
                        on_text(text[sent[0] :])
                        sent[0] = len(text)
                    if stop_runaway and runaway_reason(text) is not None:
                        break  # leaving the block closes the stream, and the server stops
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        text = completion_text(message)
        if len(text) > sent[0]:  # the closing </think> of an answer that was all thinking
            on_text(text[sent[0] :])
        return text

    def _raise_for(self, response: Any) -> None:
        """Nothing for a 200; :class:`_Retry` for a passing failure; else the request fails."""
        if response.status_code == 200:
            return
        reason = f"{response.status_code}: {_detail(response)}"
        if response.status_code in RETRY_STATUSES:
            after = response.headers.get("retry-after", "")
            raise _Retry(reason, float(after) if after.replace(".", "", 1).isdigit() else None)
        raise ReasonerRequestError(f"the reasoner server refused the request ({reason})")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _ignore(text: str) -> None:
    """An ``on_text`` for a request streamed only to watch for a runaway."""


def _streamed_text(message: dict[str, str]) -> str:
    """The text streamed so far, thinking inside ``<think>`` (closed once the answer has begun)."""
    thinking, content = message["reasoning_content"], message["content"]
    if not thinking or "<think>" in content:
        return content
    return f"<think>{thinking}" + (f"</think>{content}" if content else "")
