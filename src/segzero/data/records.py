"""The unit every dataset reader yields and every trainer/evaluator consumes.

A :class:`Sample` is one (image, request, ground truth) example in the *image* frame.
:func:`segzero.data.prepared.sample_to_row` turns it into a row of the prepared dataset (Hugging Face ``datasets``),
whose ground-truth prompts are in the *reasoner* frame (column ``reasoner_frame`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segzero.defaults import IGNORE, NO_TARGET_KEY  # noqa: F401  (re-exported: the data readers' vocabulary)


@dataclass
class Sample:
    """One example.

    Attributes:
        id: unique within its dataset and split; used for resuming and per-sample results.
        image: path to the image file, or the image itself.
        request: the referring expression or reasoning question.
        width, height: original image size in pixels.
        mask: uint8 ``(height, width)``: 0 background, 1 target, 255 ignore; None when unknown.
        boxes: per target object, inclusive ``(x1, y1, x2, y2)`` in image pixels.
        points: per target object, its positive points ``((x, y), ...)`` in image pixels.
        source: dataset name, e.g. ``"refcocog"``, ``"reasonseg"``, ``"shapeworld"``.
        is_sentence: ReasonSeg's long-query flag (None where the dataset has none).
        extra: anything else worth keeping (split, COCO ids, request family, ...); ``extra["no_target"]``
            (:data:`NO_TARGET_KEY`) is True for a request that matches nothing.
    """

    id: str
    image: str | Path | Image.Image
    request: str
    width: int
    height: int
    mask: np.ndarray | None = None
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    points: list[tuple[tuple[int, int], ...]] = field(default_factory=list)
    source: str = ""
    is_sentence: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
