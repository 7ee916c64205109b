"""What the web page offers to try: a request that suits the loaded models and, when the ShapeWorld
models are loaded, a few of ShapeWorld's held-out scenes with a request each."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

#: The request the page suggests for a reasoner of real photographs (the paper's running example).
PHOTO_REQUEST = "what can I use to cut the bread?"
#: The ShapeWorld scenes the page offers: (request family, seed within the test split); the first is the
#: scene of ``segzero demo``.
SHAPEWORLD_SCENES = (("reasoning", 7), ("referring", 3), ("reasoning", 12), ("referring", 9))


@dataclass(frozen=True)
class PageExamples:
    """The page's suggestions.

    Attributes:
        request: the example request shown in the empty request field.
        images: ``(request, PNG bytes)`` of each example image, served at ``/examples/N.png``.
    """

    request: str
    images: list[tuple[str, bytes]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"request": ..., "images": [{"url": "/examples/0.png", "request": ...}, ...]}``."""
        return {
            "request": self.request,
            "images": [{"url": f"/examples/{n}.png", "request": r} for n, (r, _) in enumerate(self.images)],
        }


def page_examples(reasoner: str | None) -> PageExamples:
    """The suggestions for the reasoner named ``reasoner`` (hub id or folder): ShapeWorld scenes and requests
    for the shipped ShapeWorld reasoner (:func:`segzero.shapeworld.demo.is_shipped_reasoner`), else
    :data:`PHOTO_REQUEST` alone."""
    from segzero.shapeworld.demo import is_shipped_reasoner

    if not reasoner or not is_shipped_reasoner(reasoner):
        return PageExamples(PHOTO_REQUEST)
    from segzero.shapeworld.generator import SPLIT_SEEDS, make_sample

    images = []
    for family, seed in SHAPEWORLD_SCENES:
        sample = make_sample(SPLIT_SEEDS["test"].start + seed, family)
        buffer = io.BytesIO()
        sample.image.save(buffer, format="PNG")
        images.append((sample.request, buffer.getvalue()))
    return PageExamples(images[0][0], images)
