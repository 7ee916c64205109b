"""HTTP server: ``create_app(pipeline, ServeSettings(...))`` -> a FastAPI app with request batching.

Attributes are imported lazily so that ``segzero.serve.settings`` (used by the CLI's
help) does not need FastAPI installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segzero.serve.app import create_app
    from segzero.serve.batcher import Batcher, BatchStats
    from segzero.serve.settings import ServeSettings

__all__ = ["BatchStats", "Batcher", "ServeSettings", "create_app"]

_WHERE = {
    "create_app": "segzero.serve.app",
    "Batcher": "segzero.serve.batcher",
    "BatchStats": "segzero.serve.batcher",
    "ServeSettings": "segzero.serve.settings",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'segzero.serve' has no attribute {name!r}")
