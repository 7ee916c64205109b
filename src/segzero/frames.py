"""The one mapping between the reasoner's square frame and an image's own pixel frame.

The reasoner sees every image resized to ``frame x frame`` (840 by default, aspect ratio not
kept) and answers in that frame. Images are described by ``(width, height)``.
"""

from __future__ import annotations

import math

from segzero.answer import ObjectPrompt
from segzero.defaults import REASONER_FRAME


def scale(value: float, src: int, dst: int) -> int:
    """Map one coordinate from a side of ``src`` pixels to one of ``dst``: ``floor(v * dst / src + 0.5)``."""
    return int(math.floor(value * dst / src + 0.5))


def map_object(
    obj: ObjectPrompt, src_size: tuple[int, int], dst_size: tuple[int, int], clamp_max: tuple[int, int]
) -> ObjectPrompt:
    """Map a box and points between frames (sizes as ``(width, height)``), clamped to ``[0, clamp_max]``."""
    (sw, sh), (dw, dh), (mx, my) = src_size, dst_size, clamp_max

    def x(v: float) -> int:
        return min(max(scale(v, sw, dw), 0), mx)

    def y(v: float) -> int:
        return min(max(scale(v, sh, dh), 0), my)

    box = None
    if obj.box is not None:
        x1, y1, x2, y2 = obj.box
        box = (x(x1), y(y1), x(x2), y(y2))
    return ObjectPrompt(box=box, points=tuple((x(px), y(py)) for px, py in obj.points))


def to_image_frame(obj: ObjectPrompt, image_size: tuple[int, int], frame: int = REASONER_FRAME) -> ObjectPrompt:
    """Reasoner frame -> image pixels: ``x * W / frame`` rounded, clamped inside the image."""
    w, h = image_size
    return map_object(obj, (frame, frame), (w, h), (w - 1, h - 1))


def to_reasoner_frame(obj: ObjectPrompt, image_size: tuple[int, int], frame: int = REASONER_FRAME) -> ObjectPrompt:
    """Image pixels -> reasoner frame: ``int(v * frame / size + 0.5)`` (how ground truth is built)."""
    return map_object(obj, image_size, (frame, frame), (frame, frame))
