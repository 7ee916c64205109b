"""Pure geometry on boxes, points and masks (numpy only).

Boxes are ``(x1, y1, x2, y2)`` in pixels with the inclusive convention used by Seg-Zero's
rewards: a box covers columns x1..x2 and rows y1..y2, so its area is ``(x2-x1+1)*(y2-y1+1)``.
Masks are boolean ``(H, W)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_area(box: Sequence[float]) -> float:
    """Inclusive area; 0 for an inverted box."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1 + 1) * max(0.0, y2 - y1 + 1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes with inclusive pixel areas; 0 when they do not overlap."""
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    if ix2 < ix1 or iy2 < iy1:
        return 0.0
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1)
    union = box_area(a) + box_area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether ``(x, y)`` lies inside ``box``, borders included."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight inclusive box ``(x1, y1, x2, y2)`` of the True pixels, or None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree fully (1.0)."""
    inter = np.logical_and(pred, gt).sum()
    union = np.logical_or(pred, gt).sum()
    return float(inter / union) if union else 1.0
