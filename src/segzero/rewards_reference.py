"""Reference-exact twins of the rewards: the values the reference release's reward code gives.

Each twin ``<name>_reference`` is registered in :data:`segzero.rewards.REWARDS` beside ``<name>`` and
has the same signature, ``(completion: str, gt: GroundTruth) -> float``. Its value is the one the
reference's function returns on that completion and ground truth, on every input: the single-object
twins follow ``verl/utils/reward_score/seg_restrict.py`` at tag 77f9ea5 (``seg_strict``, what the
released recipes train with; the soft format twin follows ``seg.py``), the multi-object twins follow
``verl/utils/reward_score/vision_reasoner.py`` at the newest commit (SPEC section 9.2). They are
written from those rules, not copied.

=============================  ======  =======================================================
twin                           range   the reference's rule
=============================  ======  =======================================================
thinking_format_reference      {0, 1}  ``re.fullmatch(r"<think>.*?</think>\\s*<answer>.*?</answer>",
                                       s, re.DOTALL)``: the same value as ``thinking_format``
seg_format_strict_reference    {0, 1}  the first ``{[^}]+}`` anywhere, ``json.loads``; keys ``bbox``,
                                       ``points_1``, ``points_2`` present (extra keys allowed), each
                                       a list of length 4, 2, 2 (elements not checked)
seg_format_soft_reference      {0, 1}  that object: the first key containing "bbox" (any case) and at
                                       least two other keys containing "point"; ``len()`` of the box
                                       value is 4, of the first two point values 2 (strings count)
bbox_iou_reference             {0, 1}  key ``bbox`` exactly, length 4; IoU > 0.5 with inclusive
                                       areas and an intersection counted only if ``ix1 < ix2 and
                                       iy1 < iy2`` (boxes touching in one row or column: 0)
bbox_l1_reference              {0, 1}  key ``bbox``, length 4; mean |pred - gt| of the 4 values < 10
points_l1_reference            {0, 1}  keys ``bbox`` (length 4), ``points_1``, ``points_2``; each
                                       point coordinate cast with ``int()`` (3.9 -> 3, "12" -> 12);
                                       both points inside the box (inclusive); the better pairing's
                                       summed distances / 2 < 100
multi_format_reference         [0, 3]  thinking format + for each item of the JSON between the first
                                       ``<answer>`` and the next ``</answer>``: 1/len if its
                                       ``bbox_2d`` is a list of 4, 1/len if its ``point_2d`` is a list
                                       of 2, summed in order; an error stops the sum where it is
multi_accuracy_reference       [0, 3]  every item needs ``bbox_2d`` and ``point_2d``; at most 120
                                       objects each side; per pair [IoU > 0.5] + [mean box L1 < 10]
                                       + [point distance < 30 and point inside its own box], with
                                       numpy on the arrays ``np.array`` makes of the values;
                                       Hungarian matching; matched sum / max(M, N); an empty side 0
non_repeat_reference           {0, 1}  the "."-separated, stripped, non-empty sentences: 0 once the
                                       occurrences of already-seen sentences add up to 2, else 1
=============================  ======  =======================================================

Wherever the reference's function raises (no JSON, ``json.loads`` fails, a key is missing, a value
cannot be compared or cast, a float overflows, a division by zero, an array of the wrong shape), it
returns 0, and so does the twin. ``multi_format_reference`` keeps what it had summed before the error,
as the reference does; its sum is a float sum of shares, so nine perfect items give
3.0000000000000004, exactly the reference's value.

**Ground truth.** The reference reads its ground truth from the dataset's ``solution`` text; the twins
read :class:`segzero.rewards.GroundTruth` (reasoner frame) and use what that text would have been:

* single object: ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>`` from ``gt.boxes[0]`` and
  ``gt.points[0]``. The reference reads it with ``\\d+``, so only non-negative whole numbers and
  exactly two points can be read; a ground truth with a fractional or negative coordinate, or
  another number of points, scores 0, as its text would in the reference. Prepared datasets store
  whole numbers in [0, 840], so this never happens with them.
* multi object: the JSON list ``[{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}, ...]`` with each
  object's first point; whole numbers are written as integers (the reference's data does so, and
  numpy then computes in int64), others as floats. An object without a point has no ``point_2d``,
  which the reference rejects (0).

**Hostile input.** The twins never raise and take time linear in the completion's length. The
reference's own code is quadratic on some strings, and the twins find its match without its
backtracking: ``re.search(r"{[^}]+}", s)`` on many ``{`` and no ``}`` after them ("{" * n: about
n**2 / 2 steps, minutes for 1 MB); the thinking-format ``fullmatch`` on many ``</think><answer>``
pairs without a final ``</answer>``; ``re.search(r"<answer>\\s*(.*?)\\s*</answer>", s)`` on many
``<answer>`` without a ``</answer>`` or on long whitespace. The value is the same: the reference
returns it, only later. The reference catches every ``Exception``, so it does not crash on any text:
an integer of more than 4300 digits makes ``json.loads`` raise (0), deep nesting a RecursionError
(0), an integer of 400 digits parses but overflows ``float`` in the IoU, the L1 mean or the
distance (0), and in the multi-object reward numpy holds it as a Python object, whose arithmetic
and comparisons the twin performs exactly as numpy does for the reference.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from segzero.answer import first_brace_span
from segzero.defaults import (
    BOX_IOU_THRESHOLD,
    BOX_L1_THRESHOLD,
    MULTI_POINT_THRESHOLD,
    POINTS_L1_THRESHOLD,
)

if TYPE_CHECKING:  # segzero.rewards imports this module to register the twins
    from segzero.rewards import GroundTruth

#: Name suffix of every twin: ``bbox_iou`` -> ``bbox_iou_reference``.
SUFFIX = "_reference"
#: The multi-object reward scores at most this many objects on each side (the reference's cap).
MAX_OBJECTS = 120

_THINK, _ANSWER, _ANSWER_END = "<think>", "<answer>", "</answer>"
# Used with search() from a fixed position; "</think>" cannot overlap itself and "<" is not
# whitespace, so every whitespace run is scanned once: linear time.
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")
_STRICT_KEYS = (("bbox", 4), ("points_1", 2), ("points_2", 2))


# --------------------------------------------------------------------------- reading like the reference


def _first_object(completion: str) -> dict | None:
    """The reference's JSON object: ``json.loads`` of the first ``{[^}]+}``; None if absent or invalid.

    The span starts with ``{`` and holds exactly one ``}``, at its end, so whatever parses is a flat
    object (its values are strings, numbers, booleans, null or lists without objects).
    """
    span = first_brace_span(completion)
    if span is None:
        return None
    try:
        return json.loads(span)
    except (ValueError, RecursionError):  # invalid JSON, > 4300-digit integers, deep nesting
        return None


def _answer_text(completion: str) -> str | None:
    """Group 1 of ``re.search(r"<answer>\\s*(.*?)\\s*</answer>", completion, re.DOTALL)``, in linear time.

    The match starts at the first ``<answer>`` and ends at the first ``</answer>`` after it; ``\\s`` is
    exactly what ``str.strip`` removes.
    """
    start = completion.find(_ANSWER)
    if start < 0:
        return None
    end = completion.find(_ANSWER_END, start + len(_ANSWER))
    return None if end < 0 else completion[start + len(_ANSWER) : end].strip()


def _whole(value: float) -> int | None:
    """The integer the reference's ``\\d+`` reads where ``value`` was written, or None if it reads none."""
    return int(value) if value >= 0 and float(value).is_integer() else None


def _gt_box(gt: GroundTruth) -> list[int] | None:
    """``gt.boxes[0]`` as the four integers of ``<box>(x1,y1),(x2,y2)</box>``, or None (see the module notes)."""
    if not gt.boxes:
        return None
    values = [_whole(v) for v in gt.boxes[0]]
    return None if None in values else values


def _gt_points(gt: GroundTruth) -> list[list[int]] | None:
    """``gt.points[0]`` as the two ``[x, y]`` of ``<points>(x,y),(x,y)</points>``, or None."""
    if not gt.points or len(gt.points[0]) != 2:
        return None
    values = [[_whole(x), _whole(y)] for x, y in gt.points[0]]
    return None if any(None in p for p in values) else values


def _json_number(value: float) -> int | float:
    """How the reference's JSON ground truth holds a coordinate: whole numbers as ints."""
    return int(value) if float(value).is_integer() else float(value)


# --------------------------------------------------------------------------- format


def thinking_format_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if the whole completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL).

    Decided in linear time: the completion starts with ``<think>`` and ends with ``</answer>``, and the
    first ``</think>`` followed by optional whitespace and ``<answer>`` ends before that final
    ``</answer>`` begins. ``gt`` is unused.
    """
    if not (completion.startswith(_THINK) and completion.endswith(_ANSWER_END)):
        return 0.0
    link = _THINK_TO_ANSWER.search(completion, len(_THINK))
    return 1.0 if link is not None and link.end() <= len(completion) - len(_ANSWER_END) else 0.0


def seg_format_strict_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if the first ``{[^}]+}`` anywhere is a JSON object whose ``bbox``, ``points_1`` and ``points_2``
    are lists of length 4, 2 and 2; other keys and the element types do not matter. ``gt`` is unused."""
    data = _first_object(completion)
    if data is None:
        return 0.0
    ok = all(isinstance(data.get(key), list) and len(data[key]) == n for key, n in _STRICT_KEYS)
    return 1.0 if ok else 0.0


def seg_format_soft_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if, in the first ``{[^}]+}`` parsed as JSON, the first key containing "bbox" (any case) holds a
    value of length 4 and there are two or more other keys containing "point", the first two holding
    values of length 2. Strings have a length too ("abcd" is a box here); numbers, booleans and
    null have none (0). ``gt`` is unused."""
    data = _first_object(completion)
    if data is None:
        return 0.0
    box_key, point_keys = None, []
    for key in data:
        low = key.lower()
        if "bbox" in low and box_key is None:
            box_key = key
        elif "point" in low:
            point_keys.append(key)
    if box_key is None or len(point_keys) < 2:
        return 0.0
    sized = [(data[box_key], 4)] + [(data[k], 2) for k in point_keys[:2]]
    return 1.0 if all(isinstance(v, (str, list)) and len(v) == n for v, n in sized) else 0.0


# --------------------------------------------------------------------------- single-object accuracy


def _reference_box(completion: str) -> Any:
    """The value of key ``bbox`` when it has length 4 (any sequence), else None."""
    data = _first_object(completion)
    if data is None:
        return None
    box = data.get("bbox")
    return box if isinstance(box, (str, list)) and len(box) == 4 else None


def _box_iou_strict(pred: Sequence[Any], gt: Sequence[int]) -> float:
    """IoU with inclusive areas and an intersection only when ``ix1 < ix2 and iy1 < iy2``.

    ``pred`` is taken as JSON gave it: ``max``/``min``/arithmetic raise for anything but numbers
    (booleans count as 0/1), and the caller turns that into 0, as the reference does.
    """
    ix1, iy1 = max(pred[0], gt[0]), max(pred[1], gt[1])
    ix2, iy2 = min(pred[2], gt[2]), min(pred[3], gt[3])
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0
    pred_area = (pred[2] - pred[0] + 1) * (pred[3] - pred[1] + 1)
    gt_area = (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1)
    return float(inter) / (pred_area + gt_area - inter)


def bbox_iou_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if the ``bbox`` of the first JSON object and ``gt.boxes[0]`` have IoU > 0.5 under the reference's
    convention (see :func:`_box_iou_strict`); 0.0 otherwise, and wherever the reference raises."""
    box, gt_box = _reference_box(completion), _gt_box(gt)
    if box is None or gt_box is None:
        return 0.0
    try:
        return 1.0 if _box_iou_strict(box, gt_box) > BOX_IOU_THRESHOLD else 0.0
    except (TypeError, OverflowError, ZeroDivisionError):
        return 0.0


def bbox_l1_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if the mean absolute difference between ``bbox`` and ``gt.boxes[0]`` is < 10, summed left to right
    and divided by 4 as the reference does; 0.0 otherwise and wherever the reference raises."""
    box, gt_box = _reference_box(completion), _gt_box(gt)
    if box is None or gt_box is None:
        return 0.0
    try:
        total = abs(box[0] - gt_box[0]) + abs(box[1] - gt_box[1]) + abs(box[2] - gt_box[2])
        return 1.0 if (total + abs(box[3] - gt_box[3])) / 4 < BOX_L1_THRESHOLD else 0.0
    except (TypeError, OverflowError):
        return 0.0


def _pairing_distance(pred: Sequence[Sequence[int]], gt: Sequence[Sequence[int]]) -> float:
    """Half the summed Euclidean distances under the better of the two pairings of two points with two.

    Each distance is ``math.sqrt`` of the exact integer sum of squares, as in the reference (not
    ``math.dist``, whose rounding can differ in the last bit).
    """

    def dist(p: Sequence[int], q: Sequence[int]) -> float:
        return math.sqrt((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2)

    straight = dist(pred[0], gt[0]) + dist(pred[1], gt[1])
    crossed = dist(pred[0], gt[1]) + dist(pred[1], gt[0])
    return min(straight, crossed) / 2


def points_l1_reference(completion: str, gt: GroundTruth) -> float:
    """1.0 if ``points_1`` and ``points_2``, their first two values cast with ``int()``, both lie inside the
    ``bbox`` (length 4, borders included) and :func:`_pairing_distance` to ``gt.points[0]`` is < 100.

    Without a ``bbox`` key the reference raises (0); with a ``bbox`` of another length it has no box to
    test (0). ``int()`` truncates floats toward zero and reads strings ("12", " 7 ", "1_0"): a
    ``points_1`` of ``"12"`` is the point (1, 2).
    """
    data, gt_points = _first_object(completion), _gt_points(gt)
    if data is None or gt_points is None:
        return 0.0
    box = data.get("bbox")
    if (
        not (isinstance(box, (str, list)) and len(box) == 4)
        or "points_1" not in data
        or "points_2" not in data
    ):
        return 0.0
    try:
        points = [[int(p[0]), int(p[1])] for p in (data["points_1"], data["points_2"])]
        inside = all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in points)
        return 1.0 if inside and _pairing_distance(points, gt_points) < POINTS_L1_THRESHOLD else 0.0
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        return 0.0


# --------------------------------------------------------------------------- multi-object (VisionReasoner)


def _item_shares(text: str) -> float:
    """The reference's item score: per item 1/len for a 4-list ``bbox_2d`` and 1/len for a 2-list
    ``point_2d``, summed in order; the first error ends the sum with what it had.

    ``len`` and the iteration are those of whatever JSON value the answer is: a list of objects
    normally, but a string iterates over its characters and an object over its keys, where ``in`` is a
    substring test and indexing with a key raises.
    """
    total = 0.0
    try:
        data = json.loads(text)
        count = len(data)
        for item in data:
            share = 0.0
            if "bbox_2d" in item:
                box = item["bbox_2d"]
                share += 1.0 if isinstance(box, list) and len(box) == 4 else 0.0
            if "point_2d" in item:
                point = item["point_2d"]
                share += 1.0 if isinstance(point, list) and len(point) == 2 else 0.0
            total += share / count
    except (ValueError, RecursionError, TypeError):  # bad JSON, no len(), not iterable, str["key"]
        pass
    return total


def multi_format_reference(completion: str, gt: GroundTruth) -> float:
    """In [0, 3]: :func:`thinking_format_reference` + :func:`_item_shares` of the JSON between the first
    ``<answer>`` and the next ``</answer>`` (whitespace stripped). ``gt`` is unused."""
    text = _answer_text(completion)
    shares = 0.0 if text is None else _item_shares(text)
    return thinking_format_reference(completion, gt) + shares


def _gt_objects(gt: GroundTruth) -> tuple[list, list] | None:
    """The boxes and first points of the reference's JSON ground truth, or None if an object has no point."""
    if len(gt.points) != len(gt.boxes) or any(not pts for pts in gt.points):
        return None
    boxes = [[_json_number(v) for v in box] for box in gt.boxes]
    points = [[_json_number(v) for v in pts[0]] for pts in gt.points]
    return boxes[:MAX_OBJECTS], points[:MAX_OBJECTS]


def _hits(
    pred_boxes: np.ndarray, pred_points: np.ndarray, gt_boxes: np.ndarray, gt_points: np.ndarray
) -> np.ndarray:
    """``(M, N)`` float hits per pair: [IoU > 0.5] + [box L1 < 10] + [distance < 30 and point in its box].

    Elementwise the same numpy operations, in the same order and on the same dtypes, as the
    reference's batch functions, so int64 wrap-around, NaN and Python-object arithmetic (integers
    beyond 64 bits) give what they give there. Raises where they raise.
    """
    p, g = pred_boxes[:, None, :], gt_boxes[None, :, :]
    ix1, iy1 = np.maximum(p[..., 0], g[..., 0]), np.maximum(p[..., 1], g[..., 1])
    ix2, iy2 = np.minimum(p[..., 2], g[..., 2]), np.minimum(p[..., 3], g[..., 3])
    inter = np.maximum(0, ix2 - ix1 + 1) * np.maximum(0, iy2 - iy1 + 1)
    pred_area = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
    gt_area = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    iou = inter / (pred_area + gt_area - inter)
    l1 = np.mean(np.abs(p - g), axis=2)
    distance = np.sqrt(np.sum((pred_points[:, None, :] - gt_points[None, :, :]) ** 2, axis=2))
    x, y = pred_points[:, 0], pred_points[:, 1]
    inside = (
        (x >= pred_boxes[:, 0]) & (x <= pred_boxes[:, 2]) & (y >= pred_boxes[:, 1]) & (y <= pred_boxes[:, 3])
    )
    return (
        (iou > BOX_IOU_THRESHOLD).astype(float)
        + (l1 < BOX_L1_THRESHOLD).astype(float)
        + ((distance < MULTI_POINT_THRESHOLD) & inside[:, None]).astype(float)
    )


def multi_accuracy_reference(completion: str, gt: GroundTruth) -> float:
    """In [0, 3]: Hungarian-matched sum of :func:`_hits` / max(M, N), M and N capped at 120.

    The answer is the JSON between the first ``<answer>`` and the next ``</answer>``; every item must
    have ``bbox_2d`` and ``point_2d`` (items beyond the 120th too). The values become arrays with
    ``np.array`` as they are (ragged lists, strings, all-boolean boxes, wrong lengths all end in 0,
    as in the reference). An empty answer or ground truth scores 0, even both empty.
    """
    objects, text = _gt_objects(gt), _answer_text(completion)
    if objects is None or text is None:
        return 0.0
    try:
        data = json.loads(text)
        pred_boxes = [item["bbox_2d"] for item in data][:MAX_OBJECTS]
        pred_points = [item["point_2d"] for item in data][:MAX_OBJECTS]
        arrays = [np.array(v) for v in (pred_boxes, pred_points, *objects)]
        if any(a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != n for a, n in zip(arrays, (4, 2, 4, 2))):
            return 0.0  # the reference's split, broadcast or matching fails on any other shape
        with np.errstate(all="ignore"):  # overflow and 0/0 give inf/nan there too, with a warning
            hits = _hits(*arrays)
        from scipy.optimize import linear_sum_assignment  # slow to import; needed only here

        rows, cols = linear_sum_assignment(hits, maximize=True)
        return float(hits[rows, cols].sum() / max(len(pred_boxes), len(objects[0])))
    except (ValueError, RecursionError, TypeError, KeyError, IndexError, OverflowError, ArithmeticError):
        return 0.0


def non_repeat_reference(completion: str, gt: GroundTruth) -> float:
    """0.0 if the repeats among the "."-separated sentences (stripped, empty ones dropped) number two or
    more in all (one sentence three times, or two sentences twice each), else 1.0. ``gt`` is unused."""
    counts = Counter(s for s in (piece.strip() for piece in completion.split(".")) if s)
    return 0.0 if sum(counts.values()) - len(counts) >= 2 else 1.0


# --------------------------------------------------------------------------- registry

#: Every twin by its registry name.
REFERENCE_REWARDS: dict[str, Callable[[str, GroundTruth], float]] = {
    f.__name__: f
    for f in (
        thinking_format_reference,
        seg_format_strict_reference,
        seg_format_soft_reference,
        bbox_iou_reference,
        bbox_l1_reference,
        points_l1_reference,
        multi_format_reference,
        multi_accuracy_reference,
        non_repeat_reference,
    )
}

#: Closed ranges of the twins that are not {0, 1} (multi_format_reference up to the float sum's rounding).
REFERENCE_REWARD_RANGES = {"multi_format_reference": (0.0, 3.0), "multi_accuracy_reference": (0.0, 3.0)}

#: Twins that read only the completion.
REFERENCE_FORMAT_ONLY = frozenset(
    {
        "thinking_format_reference",
        "seg_format_strict_reference",
        "seg_format_soft_reference",
        "multi_format_reference",
        "non_repeat_reference",
    }
)

#: The reference's ``seg_strict`` total (the released recipes), as twins, summed with weight 1 each.
SEGZERO_REFERENCE_REWARDS = tuple(
    name + SUFFIX for name in ("thinking_format", "seg_format_strict", "bbox_iou", "bbox_l1", "points_l1")
)
#: The reference's ``vision_reasoner`` total, as twins.
VISION_REASONER_REFERENCE_REWARDS = tuple(
    name + SUFFIX for name in ("multi_format", "multi_accuracy", "non_repeat")
)
