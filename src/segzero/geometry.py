"""Pure geometry on boxes, points and masks (numpy only).

Boxes are ``(x1, y1, x2, y2)`` in pixels with the inclusive convention used by Seg-Zero's
rewards: a box covers columns x1..x2 and rows y1..y2, so its area is ``(x2-x1+1)*(y2-y1+1)``.
Masks are boolean ``(H, W)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segzero.defaults import IGNORE


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


def ground_truth_planes(gt: np.ndarray, *, ignore_as_target: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Boolean target (1) and ignore (:data:`~segzero.defaults.IGNORE`) planes of a 0/1/255 ground truth.

    ``ignore_as_target``: the reference release's convention, its masks cast to bool: every nonzero pixel
    is target and none is ignored.
    """
    gt = np.asarray(gt)
    if ignore_as_target:
        return gt != 0, np.zeros(gt.shape, dtype=bool)
    return gt == 1, gt == IGNORE


def mask_iou_terms(
    pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None
) -> tuple[int, int]:
    """Intersection and union of two boolean masks in pixels; ``ignore`` pixels count in neither.

    The one ignore-aware IoU of segzero: evaluation, the ``mask_iou`` reward and the data filter
    all count through it. Sums are exact Python integers.
    """
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if ignore is not None:
        pred = pred & ~np.asarray(ignore, dtype=bool)
    return int(np.count_nonzero(pred & target)), int(np.count_nonzero(pred | target))


def iou_from_terms(intersection: int, union: int) -> float:
    """IoU from its terms; an empty prediction on an empty target (union 0) agrees fully: 1.0."""
    return 1.0 if union == 0 else intersection / union


def mask_iou(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean masks, ``ignore`` pixels left out; two empty masks agree fully (1.0)."""
    return iou_from_terms(*mask_iou_terms(pred, target, ignore))


# --- Ground-truth prompts from a mask (SPEC section 5) ------------------------------------------------
#
# Points are ``(x, y)`` in the mask's own pixel frame. The distance transform treats everything outside
# the image as background (the mask is padded with one pixel of background), so the image border is a
# boundary: a circle centred on a mask touching the border never reaches past it. Ties are broken by
# fixed rules, so the same mask always gives the same prompts. :func:`reference_points` instead follows
# the reference release's preparation exactly (unpadded transform, first maximum in row-major order).

SECOND_POINT_METHODS = ("inscribed", "reference")


def distance_to_background(mask: np.ndarray, border_is_boundary: bool = True) -> np.ndarray:
    """Euclidean distance from each pixel to the nearest background pixel (0 off the mask), float64 (H, W).

    With ``border_is_boundary`` (default) the image border counts as boundary: the mask is padded with one
    pixel of background first. Only the mask's bounding box (plus that one-pixel ring) is transformed,
    which gives the same values because the ring is all background and projecting onto it never
    lengthens a distance. Without it, the whole unpadded mask is transformed as the reference release
    does (``scipy.ndimage.distance_transform_edt(mask)``): a mask touching the border reaches past it.
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, dtype=bool)
    if not border_is_boundary:
        return distance_transform_edt(mask).astype(np.float64, copy=False)
    dist = np.zeros(mask.shape, dtype=np.float64)
    box = mask_to_box(mask)
    if box is None:
        return dist
    x1, y1, x2, y2 = box
    crop = np.pad(mask[y1 : y2 + 1, x1 : x2 + 1], 1, constant_values=False)
    dist[y1 : y2 + 1, x1 : x2 + 1] = distance_transform_edt(crop)[1:-1, 1:-1]
    return dist


def _argmax_point(dist: np.ndarray, prefer_far_from: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The pixel with the largest value of ``dist`` (> 0), ties broken deterministically.

    Without ``prefer_far_from``, among tied pixels the one nearest their own centroid wins (the middle of
    a plateau, e.g. the centre line of a rectangle, rather than its end). With it, the tied pixel farthest
    from that point wins (the two prompts spread over the object). Remaining ties: smallest y, then x.
    """
    top = dist.max(initial=0.0)
    if top <= 0:
        return None
    ys, xs = np.nonzero(dist == top)
    if prefer_far_from is None:
        key = -((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)
    else:
        key = (xs - prefer_far_from[0]) ** 2 + (ys - prefer_far_from[1]) ** 2
    # np.nonzero lists pixels in row-major order and argmax returns the first maximum: y, then x.
    i = int(np.argmax(key))
    return int(xs[i]), int(ys[i])


def inscribed_point(mask: np.ndarray) -> tuple[int, int] | None:
    """Centre ``(x, y)`` of the largest circle inscribed in the mask (argmax of the distance transform).

    With several components it lies in the one holding the largest circle. None for an empty mask.
    """
    return _argmax_point(distance_to_background(mask))


def second_inscribed_point(
    mask: np.ndarray, first: tuple[int, int], method: str = "inscribed"
) -> tuple[int, int]:
    """The second positive point, given the first (``(x, y)``, normally :func:`inscribed_point`).

    Args:
        mask: boolean ``(H, W)``.
        first: point 1 in the same frame.
        method: ``"inscribed"`` (default; the paper's "two largest inscribed circles"): the centre of the
            largest circle inscribed in the mask once the first circle (the open disk of radius
            ``dist[first]`` around ``first``) is removed; the removed disk counts as boundary, so the two
            circles do not overlap. Among equally large circles the one farthest from ``first`` wins.
            ``"reference"`` (the reference release's heuristic): the largest distance-transform value among
            mask pixels farther from ``first`` than the median distance of all mask pixels to ``first``.

    Returns:
        ``(x, y)``; ``first`` itself when nothing qualifies (a 1-pixel mask, a disk filled by its circle).
    """
    mask = np.asarray(mask, dtype=bool)
    if method not in SECOND_POINT_METHODS:
        raise ValueError(f"second-point method must be one of {SECOND_POINT_METHODS}, got {method!r}")
    dist = distance_to_background(mask)
    fx, fy = first
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return first
    d2 = (xs - fx) ** 2 + (ys - fy) ** 2
    if method == "inscribed":
        radius = dist[fy, fx]
        rest = mask.copy()
        rest[ys[d2 < radius**2], xs[d2 < radius**2]] = False
        candidates = distance_to_background(rest)
    else:
        d = np.sqrt(d2)
        far = d > np.median(d)
        candidates = np.zeros_like(dist)
        candidates[ys[far], xs[far]] = dist[ys[far], xs[far]]
    point = _argmax_point(candidates, prefer_far_from=first)
    return point if point is not None else first


def _nearest_on_mask(xs: np.ndarray, ys: np.ndarray, x: int, y: int) -> tuple[int, int]:
    """The mask pixel (of ``xs, ys``, row-major) nearest to ``(x, y)``; the first of equally near ones."""
    i = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
    return int(xs[i]), int(ys[i])


def reference_points(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Points 1 and 2 ``(x, y)`` exactly as the reference release's data preparation draws them; None if empty.

    Its rules (``prepare_dataset/training_data_prepare_toturial.ipynb``), on the distance transform of the
    unpadded mask (:func:`distance_to_background` with ``border_is_boundary=False``):

    1. point 1: the first maximum of the transform in row-major order;
    2. point 2: among the mask pixels whose distance to point 1 is above the median of those distances,
       the first (row-major) with the largest transform value; when none is (a one-pixel mask), the
       transform's first maximum in the 20 x 20 window ``[c-10, c+10)`` around the mask's centroid ``c``
       (each coordinate's mean, truncated to int);
    3. a point off the mask moves to the nearest mask pixel (the first in row-major order).
    """
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    dist = distance_to_background(mask, border_is_boundary=False)
    y1, x1 = (int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape))
    from_first = ((ys - y1) ** 2 + (xs - x1) ** 2) ** 0.5
    far = from_first > np.median(from_first)
    if far.any():
        i = int(np.argmax(dist[ys[far], xs[far]]))
        x2, y2 = int(xs[far][i]), int(ys[far][i])
    else:
        cy, cx = int(np.mean(ys)), int(np.mean(xs))
        top, left = max(0, cy - 10), max(0, cx - 10)
        window = dist[top : min(mask.shape[0], cy + 10), left : min(mask.shape[1], cx + 10)]
        wy, wx = np.unravel_index(int(np.argmax(window)), window.shape)
        x2, y2 = int(wx) + left, int(wy) + top
    first = (x1, y1) if mask[y1, x1] else _nearest_on_mask(xs, ys, x1, y1)
    second = (x2, y2) if mask[y2, x2] else _nearest_on_mask(xs, ys, x2, y2)
    return first, second


def mask_prompts(
    mask: np.ndarray, second_point: str = "inscribed", exact_reference: bool = False
) -> tuple[tuple[int, int, int, int], tuple[tuple[int, int], tuple[int, int]]] | None:
    """Ground-truth prompts of one object: ``(box, (point_1, point_2))`` in the mask's pixels; None if empty.

    The whole mask is one object even when it has several components: the box spans them all, point 1 is
    the centre of the largest inscribed circle anywhere, and point 2 (see :func:`second_inscribed_point`)
    may fall in another component when that holds a larger circle than what is left of the first one.
    ``exact_reference`` draws both points with :func:`reference_points` instead (the reference protocol;
    ``second_point`` must then be ``"reference"``).
    """
    box = mask_to_box(mask)
    if box is None:
        return None
    if exact_reference:
        if second_point != "reference":
            raise ValueError(f"the reference's points use its own point-2 heuristic, not {second_point!r}")
        points = reference_points(mask)
        assert points is not None  # the mask has a box, so it is not empty
        return box, points
    first = inscribed_point(mask)
    assert first is not None  # a non-empty mask has a positive distance somewhere
    return box, (first, second_inscribed_point(mask, first, second_point))


def component_prompts(
    mask: np.ndarray, min_area: int = 1
) -> list[tuple[tuple[int, int, int, int], tuple[int, int]]]:
    """One ``(box, point_1)`` per 8-connected component of at least ``min_area`` pixels, largest first.

    The multi-object answer form has one box and one point per object; this treats each component as an
    object. Equal areas keep the order of the components' first pixels (row-major).
    """
    from scipy.ndimage import label

    labels, n = label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = sorted((i for i in range(n) if areas[i] >= min_area), key=lambda i: -areas[i])
    out = []
    for i in order:
        part = labels == i + 1
        box = mask_to_box(part)
        point = inscribed_point(part)
        assert box is not None and point is not None
        out.append((box, point))
    return out
