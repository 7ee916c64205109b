"""Errors meant for people: each message is one sentence saying what was wrong and what to do."""

from __future__ import annotations


class SegZeroError(Exception):
    """Base class of every error segzero raises on purpose; the CLI prints its message and exits 2."""


class InputError(SegZeroError, ValueError):
    """A bad image, request or argument given by the user."""


class ModelLoadError(SegZeroError):
    """A model id or folder that could not be loaded."""


class DatasetError(SegZeroError):
    """A dataset folder or file that is missing or malformed."""


class EngineError(SegZeroError):
    """A reasoner engine that cannot run: its package is missing, or its server is unreachable, refuses the
    key, serves another model or takes no images."""


class ReasonerRequestError(SegZeroError):
    """One request the reasoner engine failed on after its retries; the other requests go on."""
