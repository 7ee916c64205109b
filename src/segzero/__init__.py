"""segzero: reasoning segmentation with a vision-language reasoner and SAM2 (Seg-Zero).

Importing the package is cheap and torch-free; the model-backed classes load on first use::

    from segzero import ReasoningSegmenter
    seg = ReasoningSegmenter.from_pretrained()
    result = seg.segment("kitchen.jpg", "what can I use to cut the bread?")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ReasoningSegmenter": "segzero.pipeline",
    "SegmentationResult": "segzero.pipeline",
    "Reasoner": "segzero.reasoner",
    "Segmenter": "segzero.segmenter",
}

if TYPE_CHECKING:
    from segzero.pipeline import ReasoningSegmenter, SegmentationResult
    from segzero.reasoner import Reasoner
    from segzero.segmenter import Segmenter


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segzero' has no attribute {name!r}")


__all__ = ["ReasoningSegmenter", "SegmentationResult", "Reasoner", "Segmenter", "__version__"]
