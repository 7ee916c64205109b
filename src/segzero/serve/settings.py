"""Server configuration: one dataclass whose fields (help, minimum) also make the CLI options.

The pipeline's own settings (models, the pixel cap, ...) are not repeated here: they are the
:class:`~segzero.config.PipelineConfig` the served pipeline was built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segzero.config import check_fields


def _setting(default: float | int | bool, help: str, low: float | None = None) -> field:
    metadata = {"help": help} if low is None else {"help": help, "min": low}
    return field(default=default, metadata=metadata)


@dataclass
class ServeSettings:
    """Batching, input limits and start-up of the HTTP server (``segzero serve``)."""

    max_batch_size: int = _setting(
        8,
        "Most requests answered by one pipeline call (1 turns batching off); with a streaming engine (vllm, "
        "openai), most requests in the reasoner at once, each answered as soon as it is done.",
        1,
    )
    max_wait_ms: float = _setting(
        20.0,
        "How long the first request of a batch waits for others to join, in milliseconds (a streaming engine "
        "gets each request as it arrives).",
        0,
    )
    queue_size: int = _setting(
        64, "Requests that may wait beside the running batch; beyond this the server answers 503.", 1
    )
    request_timeout_s: float = _setting(
        300.0, "Seconds a request may wait for its batch and the model; beyond this it gets 504.", 0.001
    )
    max_upload_bytes: int = _setting(
        20 * 1024 * 1024, "Largest image upload in bytes (before base64); larger uploads get 413.", 1
    )
    max_request_chars: int = _setting(
        1000, "Longest request text in characters; longer requests get 422.", 1
    )
    decode_workers: int = _setting(
        2, "Images decoded at the same time; bounds the memory of many large uploads at once.", 1
    )
    header_timeout_s: float = _setting(
        10.0,
        "Seconds a client has to send a request's headers, from its first byte (or from connecting); slower "
        "clients get 408 and are disconnected.",
        0.001,
    )
    body_timeout_s: float = _setting(
        60.0,
        "Seconds a client has to send the whole request body once its headers are in; slower uploads get 408 "
        "and are disconnected. Raise it for large images over slow links.",
        0.001,
    )
    keep_alive_timeout_s: float = _setting(
        5.0, "Seconds an idle keep-alive connection is held open between requests.", 0.001
    )
    warmup: bool = _setting(
        True,
        "Run one tiny request through the pipeline at start-up, before accepting traffic, so the first user "
        "does not pay for lazy initialisation; the server does not start if it fails.",
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def max_body_bytes(self, base64: bool) -> int:
        """Largest body read: the image (base64 in JSON bodies) plus room for the text fields and framing."""
        image = self.max_upload_bytes * 4 // 3 + 4 if base64 else self.max_upload_bytes
        return image + 4 * self.max_request_chars + 16 * 1024
