"""Server configuration: one dataclass whose field help texts also document the CLI options."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from segzero.defaults import MAX_IMAGE_PIXELS


@dataclass
class ServeSettings:
    """Batching, input limits and start-up of the HTTP server (``segzero serve``)."""

    max_batch_size: int = field(
        default=8, metadata={"help": "Most requests answered by one pipeline call (1 turns batching off)."}
    )
    max_wait_ms: float = field(
        default=20.0,
        metadata={"help": "How long the first request of a batch waits for others to join, in milliseconds."},
    )
    queue_size: int = field(
        default=64,
        metadata={
            "help": "Requests that may wait beside the running batch; beyond this the server answers 503."
        },
    )
    request_timeout_s: float = field(
        default=300.0,
        metadata={"help": "Seconds a request may wait for its batch and the model; beyond this it gets 504."},
    )
    max_upload_bytes: int = field(
        default=20 * 1024 * 1024,
        metadata={"help": "Largest image upload in bytes (before base64); larger uploads get 413."},
    )
    max_pixels: int = field(
        default=MAX_IMAGE_PIXELS,
        metadata={"help": "Largest image in pixels (width x height); larger get 413."},
    )
    max_request_chars: int = field(
        default=1000, metadata={"help": "Longest request text in characters; longer requests get 422."}
    )
    decode_workers: int = field(
        default=2,
        metadata={
            "help": "Images decoded at the same time; bounds the memory of many large uploads at once."
        },
    )
    header_timeout_s: float = field(
        default=10.0,
        metadata={
            "help": "Seconds a client has to send a request's headers, from its first byte (or from "
            "connecting); slower clients get 408 and are disconnected."
        },
    )
    body_timeout_s: float = field(
        default=60.0,
        metadata={
            "help": "Seconds a client has to send the whole request body once its headers are in; slower "
            "uploads get 408 and are disconnected. Raise it for large images over slow links."
        },
    )
    keep_alive_timeout_s: float = field(
        default=5.0,
        metadata={"help": "Seconds an idle keep-alive connection is held open between requests."},
    )
    warmup: bool = field(
        default=True,
        metadata={
            "help": "Run one tiny request through the pipeline at start-up, before accepting traffic, so the "
            "first user does not pay for lazy initialisation; the server does not start if it fails."
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool) and getattr(self, f.name) <= 0:
                raise ValueError(f"ServeSettings.{f.name} must be positive, got {getattr(self, f.name)!r}.")

    def max_body_bytes(self, base64: bool) -> int:
        """Largest body read: the image (base64 in JSON bodies) plus room for the text fields and framing."""
        image = self.max_upload_bytes * 4 // 3 + 4 if base64 else self.max_upload_bytes
        return image + 4 * self.max_request_chars + 16 * 1024


def help_for(name: str) -> str:
    """The help text of one :class:`ServeSettings` field (used by the CLI so it is written once)."""
    return next(f.metadata["help"] for f in fields(ServeSettings) if f.name == name)
