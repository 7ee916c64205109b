"""GRPO rewards for the reasoner (SPEC section 4), as pure functions plus thin TRL adapters.

Every reward in :data:`REWARDS` is a pure function ``(completion: str, gt: GroundTruth) -> float``
that never raises on any completion text. All coordinates, predicted and ground truth, are in
the **reasoner frame** (``GroundTruth.frame``, ``REASONER_FRAME`` by default). Names are stable strings; recipes refer to them together with
TRL's ``reward_weights``.

=======================  ======  ===========================================================
name                     range   what it scores
=======================  ======  ===========================================================
thinking_format          {0, 1}  the whole completion is ``<think>..</think>\\s*<answer>..</answer>``
seg_format_soft          {0, 1}  first ``{...}`` of the answer is JSON with a "bbox" key (4 numbers)
                                 and two or more "point" keys (2 numbers each)
seg_format_strict        {0, 1}  that object has exactly ``bbox``, ``points_1``, ``points_2`` (4, 2, 2)
seg_format_box_only      {0, 1}  that object has exactly ``bbox`` (4 numbers): the ``box_only`` prompt
seg_format_points_only   {0, 1}  that object has exactly ``points_1``, ``points_2`` (2, 2): the
                                 ``points_only`` prompt
bbox_iou                 {0, 1}  IoU(pred box, gt box) > 0.5, inclusive pixel areas
bbox_l1                  {0, 1}  mean |pred - gt| over the 4 box coordinates < 10 px
points_l1                {0, 1}  both points inside the predicted box and mean distance to the
                                 gt points (better pairing) < 100 px
points_l1_no_box         {0, 1}  mean distance to the gt points (better pairing) < 100 px, with or
                                 without a predicted box (the ``points_only`` ablation's accuracy)
bbox_iou_soft            [0, 1]  the IoU itself
bbox_l1_soft             [0, 1]  ``2 ** (-d / 10)``, d = mean L1 of the box coordinates
points_l1_soft           [0, 1]  ``(share of points inside the box) * 2 ** (-d / 100)``
points_l1_no_box_soft    [0, 1]  ``2 ** (-d / 100)``
multi_format             [0, 3]  thinking_format + mean over answer items of
                                 [bbox_2d is 4 numbers] + [point_2d is 2 numbers]
generalized_format       [0, 3]  multi_format, with the empty list ``[]`` earning the full 2
multi_accuracy           [0, 3]  Hungarian-matched sum of per-pair hits / max(M, N)
multi_accuracy_soft      [0, 3]  the same with each hit replaced by its soft form
non_repeat               {0, 1}  0 when one "."-separated sentence occurs three or more times
=======================  ======  ===========================================================

Each of thinking_format, seg_format_strict, seg_format_soft, bbox_iou, bbox_l1, points_l1,
multi_format, multi_accuracy and non_repeat has a twin ``<name>_reference`` that gives exactly the
reference release's value (:mod:`segzero.rewards_reference`; ``docs/reproducing.md`` lists where
the two differ and why ours are recommended).

``mask_iou`` (in [0, 1]; None for a row without a gt mask) is not in :data:`REWARDS`: it needs a
segmenter and a whole batch, see :class:`MaskIoUReward`. :func:`trl_reward` and
:func:`make_trl_rewards` build any of these names.

The paper's total reward is :data:`SEGZERO_REWARDS` summed with equal weights; VisionReasoner's is
:data:`VISION_REASONER_REWARDS`; zero, one or many objects (``recipes/generalized_tiny_cpu.yaml``)
is :data:`GENERALIZED_REWARDS`. The ablations that ask for a box only or two points only
(``recipes/ablation_box_only.yaml``, ``recipes/ablation_points_only.yaml``) use
:data:`BOX_ONLY_REWARDS` and :data:`POINTS_ONLY_REWARDS`.

Choices where the reference is silent or ambiguous:

* **Soft forms.** Each soft reward crosses 0.5 exactly at its hard threshold: the IoU crosses 0.5
  at 0.5; ``2 ** (-d / t)`` is 0.5 at ``d = t`` (t = 10 px for the box, 100 px for the points,
  30 px for a multi-object point); a point outside the predicted box halves (or zeroes) the
  points term. So "soft > 0.5" is "hard = 1", and far-off answers still get a signal that decays
  smoothly (``2 ** (-d/t)`` is 1/8 at three thresholds) instead of a flat zero.
* **Quotes.** The prompt's example uses Python single quotes, but the paper's format rewards use
  ``json.loads``. The *format* rewards here accept only JSON (double quotes), as the paper's did:
  the released checkpoints mostly answer in double-quoted JSON, which is what this reward teaches,
  and a recipe that reproduces them must teach the same thing. The *accuracy* rewards read the
  answer with :func:`segzero.answer.parse_answer`, which also accepts Python literals, a missing
  ``<think>`` and text around the JSON: geometry is scored the way the evaluation reads answers,
  and the format is the format rewards' job alone, so a single-quoted answer loses exactly its
  format reward and no more.
* **Where the "first {...}" is.** It is searched in the answer (inside the first ``<answer>``
  tag; without tags, the text outside ``<think>``), so a brace in the reasoning cannot hide a good
  answer. It is decoded with ``json.JSONDecoder.raw_decode`` from that brace, so text after the
  object does not matter. "Numbers" means finite ints or floats (no NaN/inf, no booleans), for
  both format rewards.
* **Box-only and points-only answers.** The paper ablates answers with a box only and with two
  points only but publishes no rewards for them. Their format rewards are :func:`seg_format_strict`
  with the key set cut down to what the prompt asks for. A points-only answer has no box, so
  :func:`points_l1` (points inside the predicted box) is always 0 for it; :func:`points_l1_no_box`
  keeps the distance test and drops the box test. The box-only accuracy is the usual
  :func:`bbox_iou` + :func:`bbox_l1`.
* **non_repeat.** "Some sentence occurs again two or more times" is read literally: a sentence
  that, after its first occurrence, occurs again two or more times, i.e. three or more times in
  all. Sentences are the pieces of ``completion.split(".")`` with surrounding whitespace removed;
  empty pieces (from "..." or a final ".") are not sentences. Comparison is exact otherwise.
* **Multi-object empty answers.** An explicit empty list ``[]`` earns no item credit in
  multi_format (the mean over zero items is taken as 0) and the full item credit in
  generalized_format (it is the ``generalized`` prompt's "nothing matches"); in multi_accuracy it
  scores the full 3 when the ground truth is empty too (nothing asked, nothing given) and 0
  otherwise. An unreadable answer scores 0.
* **Target-free samples** (nothing matches: no gt boxes, an all-zero gt mask). An empty answer
  earns every accuracy reward in full (multi_accuracy and multi_accuracy_soft 3, mask_iou 1);
  an answer with any object earns none of them (0), whatever mask the segmenter draws for it.
  The single-object rewards have no gt box to compare with and give 0. For samples with targets
  the empty answer earns 0 and the matching rewards apply as usual.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from segzero.answer import ParsedAnswer, parse_answer, split_think_answer
from segzero.defaults import (
    BOX_IOU_THRESHOLD,
    BOX_L1_THRESHOLD,
    MULTI_POINT_THRESHOLD,
    POINTS_L1_THRESHOLD,
    REASONER_FRAME,
)
from segzero.frames import ObjectPrompt
from segzero.geometry import box_iou, mask_iou, point_in_box
from segzero.rewards_reference import REFERENCE_FORMAT_ONLY, REFERENCE_REWARD_RANGES, REFERENCE_REWARDS

Box = tuple[float, float, float, float]
Point = tuple[float, float]

# Answers longer than this are not scanned further for JSON (same bound as the parser's).
_MAX_ANSWER_CHARS = 20_000
# thinking_format's pattern is <think>.*?</think>\s*<answer>.*?</answer> (DOTALL, full match); it is
# checked through its one seam, "</think>\s*<answer>", because the pattern itself backtracks
# quadratically on completions with many "</think>" and "</answer>" tags.
_THINK_OPEN, _ANSWER_CLOSE = "<think>", "</answer>"
_THINK_SEAM_RE = re.compile(r"</think>\s*<answer>")
_STRICT_KEYS = {"bbox": 4, "points_1": 2, "points_2": 2}
_BOX_ONLY_KEYS = {"bbox": 4}
_POINTS_ONLY_KEYS = {"points_1": 2, "points_2": 2}
_JSON = json.JSONDecoder()


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class GroundTruth:
    """The target of one sample, in the reasoner frame.

    Attributes:
        boxes: per object, inclusive ``(x1, y1, x2, y2)``.
        points: per object, its points ``((x, y), ...)``; either empty (no points known) or one
            entry per box. Single-object rewards use object 0 (Seg-Zero's two points);
            multi-object rewards use each object's first point (VisionReasoner's one point).
        frame: side of the reasoner frame both are in; the completion is read in the same frame.

    Raises:
        ValueError: on a malformed ground truth (a data bug, not a model error).
    """

    boxes: tuple[Box, ...] = ()
    points: tuple[tuple[Point, ...], ...] = ()
    frame: int = REASONER_FRAME

    def __post_init__(self) -> None:
        try:
            boxes = tuple(_as_floats(b, 4) for b in self.boxes)
            points = tuple(tuple(_as_floats(p, 2) for p in obj) for obj in self.points)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed ground truth ({exc}); boxes need 4 numbers and points 2") from None
        if points and len(points) != len(boxes):
            raise ValueError(f"ground truth has {len(boxes)} boxes but points for {len(points)} objects")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "points", points)

    @classmethod
    def from_columns(cls, boxes: Any, points: Any, frame: Any = None) -> GroundTruth:
        """From one row's ``reasoner_boxes`` (``[[x1,y1,x2,y2], ...]``), ``reasoner_points``
        (``[[[x,y], ...], ...]``) and ``reasoner_frame``; None stands for "not given"."""
        return cls(
            boxes=() if boxes is None else tuple(boxes),
            points=() if points is None else tuple(points),
            frame=REASONER_FRAME if frame is None else int(frame),
        )


def _as_floats(values: Any, n: int) -> tuple[float, ...]:
    values = tuple(values)
    if len(values) != n or not all(_is_number(v) for v in values):
        raise ValueError(f"expected {n} finite numbers, got {values!r:.60}")
    return tuple(float(v) for v in values)


def _first_box(gt: GroundTruth) -> Box | None:
    return gt.boxes[0] if gt.boxes else None


def _first_points(gt: GroundTruth) -> tuple[Point, ...]:
    return gt.points[0] if gt.points else ()


# --------------------------------------------------------------------------- small helpers


def _is_number(value: Any) -> bool:
    """A finite real number (numpy scalars too); booleans are not numbers here (``True`` is an int)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_numbers(value: Any, n: int) -> bool:
    """A JSON list of exactly ``n`` finite numbers."""
    return isinstance(value, list) and len(value) == n and all(_is_number(v) for v in value)


def _first_json(answer: str, openers: str) -> Any:
    """The JSON value starting at the first of ``openers`` in ``answer``; None if it does not parse."""
    answer = answer[:_MAX_ANSWER_CHARS]
    starts = [i for i in (answer.find(c) for c in openers) if i >= 0]
    if not starts:
        return None
    try:
        value, _ = _JSON.raw_decode(answer, min(starts))
    except (ValueError, RecursionError):
        return None
    return value


@lru_cache(maxsize=4096)
def _parse(completion: str, frame: int = REASONER_FRAME) -> ParsedAnswer:
    # Several rewards read the same completion in one step; parse it once.
    return parse_answer(completion, frame)


def _first_object(completion: str, gt: GroundTruth) -> ObjectPrompt | None:
    parsed = _parse(completion, gt.frame)
    return parsed.objects[0] if parsed.objects else None


def _box_l1(a: Sequence[float], b: Sequence[float]) -> float:
    """Mean absolute difference of the four coordinates, in pixels."""
    return sum(abs(float(p) - float(q)) for p, q in zip(a, b)) / 4.0


def _decay(distance: float, threshold: float) -> float:
    """``2 ** (-d / t)``: 1 at 0, 0.5 at the hard threshold, 1/8 at three thresholds."""
    return float(2.0 ** (-distance / threshold))


def _assignment(scores: np.ndarray, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of a (rows, cols) score matrix: the matched ``(row indices, column indices)``."""
    # Imported here: scipy.optimize takes seconds to import, and only the matching rewards need it.
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(scores, maximize=maximize)


def _matched_distance(pred: Sequence[Point], gt: Sequence[Point]) -> float | None:
    """Mean Euclidean distance under the pairing of ``pred`` to ``gt`` that minimises it.

    For two points this is the better of the two pairings. None when the counts differ or are 0.
    """
    if not pred or len(pred) != len(gt):
        return None
    cost = np.array([[math.dist(p, q) for q in gt] for p in pred], dtype=float)
    rows, cols = _assignment(cost, maximize=False)
    return float(cost[rows, cols].mean())


def _inside_share(points: Sequence[Point], box: Box | None) -> float:
    """Share of ``points`` inside ``box`` (borders included); 0 without a box or points."""
    if box is None or not points:
        return 0.0
    return sum(point_in_box(p, box) for p in points) / len(points)


# --------------------------------------------------------------------------- format rewards


def thinking_format(completion: str, gt: GroundTruth) -> float:
    """1.0 if the *whole* completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL).

    Nothing may precede ``<think>`` or follow ``</answer>``, not even whitespace (full match, as in
    the paper). ``gt`` is unused.

    The pattern matches exactly when the completion starts with ``<think>``, ends with ``</answer>``
    and the first ``</think>\\s*<answer>`` after the opening tag ends no later than the closing
    tag starts (the two ``.*?`` match anything); checked that way it takes linear time.
    """
    if not (completion.startswith(_THINK_OPEN) and completion.endswith(_ANSWER_CLOSE)):
        return 0.0
    seam = _THINK_SEAM_RE.search(completion, len(_THINK_OPEN))
    return 1.0 if seam is not None and seam.end() <= len(completion) - len(_ANSWER_CLOSE) else 0.0


def _answer_object(completion: str) -> dict | None:
    """The JSON object starting at the first ``{`` of the answer, or None (JSON only, see module notes)."""
    _, answer = split_think_answer(completion)
    value = _first_json(answer, "{")
    return value if isinstance(value, dict) else None


def seg_format_soft(completion: str, gt: GroundTruth) -> float:
    """1.0 if the answer's first ``{...}`` is JSON with a key containing "bbox" (any case) whose value is
    a list of 4 numbers and at least two keys containing "point" whose values are lists of 2 numbers.

    Keys may come in any order and extra keys are allowed. ``gt`` is unused.
    """
    obj = _answer_object(completion)
    if obj is None:
        return 0.0
    has_box = any("bbox" in k.lower() and _is_numbers(v, 4) for k, v in obj.items())
    n_points = sum("point" in k.lower() and _is_numbers(v, 2) for k, v in obj.items())
    return 1.0 if has_box and n_points >= 2 else 0.0


def _has_exactly(completion: str, keys: Mapping[str, int]) -> float:
    """1.0 if the answer's first ``{...}`` has exactly ``keys`` (any order), each a list of its count of
    numbers; else 0.0."""
    obj = _answer_object(completion)
    if obj is None or set(obj) != set(keys):
        return 0.0
    return 1.0 if all(_is_numbers(obj[k], n) for k, n in keys.items()) else 0.0


def seg_format_strict(completion: str, gt: GroundTruth) -> float:
    """1.0 if the answer's first ``{...}`` is JSON with exactly the keys ``bbox``, ``points_1``, ``points_2``
    (any order) holding lists of 4, 2 and 2 numbers; else 0.0. ``gt`` is unused."""
    return _has_exactly(completion, _STRICT_KEYS)


def seg_format_box_only(completion: str, gt: GroundTruth) -> float:
    """1.0 if the answer's first ``{...}`` is JSON with exactly one key, ``bbox``, holding a list of 4 numbers
    (the ``box_only`` prompt's answer); else 0.0. ``gt`` is unused."""
    return _has_exactly(completion, _BOX_ONLY_KEYS)


def seg_format_points_only(completion: str, gt: GroundTruth) -> float:
    """1.0 if the answer's first ``{...}`` is JSON with exactly the keys ``points_1`` and ``points_2`` (any
    order) holding lists of 2 numbers each (the ``points_only`` prompt's answer); else 0.0.

    ``gt`` is unused.
    """
    return _has_exactly(completion, _POINTS_ONLY_KEYS)


# --------------------------------------------------------------------------- single-object accuracy


def bbox_iou_soft(completion: str, gt: GroundTruth) -> float:
    """IoU in [0, 1] of the first predicted box and ``gt.boxes[0]`` (inclusive pixel areas).

    0.0 when either box is missing.

    The predicted box is read by :func:`parse_answer` (clamped to the frame, corners ordered).
    """
    obj, gt_box = _first_object(completion, gt), _first_box(gt)
    if obj is None or obj.box is None or gt_box is None:
        return 0.0
    return box_iou(obj.box, gt_box)


def bbox_iou(completion: str, gt: GroundTruth) -> float:
    """1.0 if :func:`bbox_iou_soft` > 0.5 (``BOX_IOU_THRESHOLD``), else 0.0."""
    return 1.0 if bbox_iou_soft(completion, gt) > BOX_IOU_THRESHOLD else 0.0


def _box_l1_of(completion: str, gt: GroundTruth) -> float | None:
    obj, gt_box = _first_object(completion, gt), _first_box(gt)
    if obj is None or obj.box is None or gt_box is None:
        return None
    return _box_l1(obj.box, gt_box)


def bbox_l1(completion: str, gt: GroundTruth) -> float:
    """1.0 if the mean absolute difference of the four box coordinates is < 10 px (``BOX_L1_THRESHOLD``)."""
    d = _box_l1_of(completion, gt)
    return 1.0 if d is not None and d < BOX_L1_THRESHOLD else 0.0


def bbox_l1_soft(completion: str, gt: GroundTruth) -> float:
    """``2 ** (-d / 10)`` for the mean box L1 distance d in px (0.5 at the hard threshold); 0 without box."""
    d = _box_l1_of(completion, gt)
    return 0.0 if d is None else _decay(d, BOX_L1_THRESHOLD)


def _points_terms(completion: str, gt: GroundTruth) -> tuple[float, float] | None:
    """``(share of predicted points inside the predicted box, matched mean distance)``, or None.

    None when there is no answer or the predicted and gt point counts differ (normally 2 and 2).
    """
    obj = _first_object(completion, gt)
    if obj is None:
        return None
    d = _matched_distance(obj.points, _first_points(gt))
    if d is None:
        return None
    return _inside_share(obj.points, obj.box), d


def points_l1(completion: str, gt: GroundTruth) -> float:
    """1.0 if every predicted point is inside the predicted box (borders included) and the mean distance to
    the gt points, under the better pairing, is < 100 px (``POINTS_L1_THRESHOLD``); else 0.0."""
    terms = _points_terms(completion, gt)
    if terms is None:
        return 0.0
    inside, d = terms
    return 1.0 if inside == 1.0 and d < POINTS_L1_THRESHOLD else 0.0


def points_l1_soft(completion: str, gt: GroundTruth) -> float:
    """``inside_share * 2 ** (-d / 100)`` in [0, 1]: one point outside the box halves it, so the value
    exceeds 0.5 exactly when :func:`points_l1` is 1."""
    terms = _points_terms(completion, gt)
    if terms is None:
        return 0.0
    inside, d = terms
    return inside * _decay(d, POINTS_L1_THRESHOLD)


def points_l1_no_box(completion: str, gt: GroundTruth) -> float:
    """1.0 if the mean distance of the predicted points to the gt points, under the better pairing, is
    < 100 px (``POINTS_L1_THRESHOLD``); else 0.0. A predicted box, if any, is ignored.

    :func:`points_l1` without its inside-the-box test, for answers that carry no box. 0.0 when the
    predicted and gt point counts differ (normally 2 and 2).
    """
    terms = _points_terms(completion, gt)
    return 1.0 if terms is not None and terms[1] < POINTS_L1_THRESHOLD else 0.0


def points_l1_no_box_soft(completion: str, gt: GroundTruth) -> float:
    """``2 ** (-d / 100)`` in [0, 1] for the matched mean point distance d (0.5 at the hard threshold of
    :func:`points_l1_no_box`); 0.0 when there is no answer or the point counts differ."""
    terms = _points_terms(completion, gt)
    return 0.0 if terms is None else _decay(terms[1], POINTS_L1_THRESHOLD)


# --------------------------------------------------------------------------- multi-object (VisionReasoner)


def multi_format(completion: str, gt: GroundTruth) -> float:
    """In [0, 3]: :func:`thinking_format` + the mean over the answer list's items of
    [``bbox_2d`` is a list of 4 numbers] + [``point_2d`` is a list of 2 numbers].

    The list is the JSON value starting at the answer's first bracket; a bare object, an unparsable
    or empty list give no item credit; non-object items count as items scoring 0. ``gt`` is unused.
    """
    return thinking_format(completion, gt) + _list_item_score(completion, empty=0.0)


def generalized_format(completion: str, gt: GroundTruth) -> float:
    """In [0, 3]: :func:`multi_format`, except that the empty list ``[]`` (nothing matches, the
    ``generalized`` prompt's answer) earns the full item credit 2. ``gt`` is unused."""
    return thinking_format(completion, gt) + _list_item_score(completion, empty=2.0)


def _list_item_score(completion: str, empty: float) -> float:
    """The mean over the answer list's items of [``bbox_2d`` is 4 numbers] + [``point_2d`` is 2 numbers];
    ``empty`` for the empty list, 0 for a bare object or an unparsable answer."""
    _, answer = split_think_answer(completion)
    items = _first_json(answer, "[{")
    if not isinstance(items, list):
        return 0.0
    if not items:
        return empty
    hits = sum(
        _is_numbers(it.get("bbox_2d"), 4) + _is_numbers(it.get("point_2d"), 2)
        for it in items
        if isinstance(it, dict)
    )
    return hits / len(items)


def _pair_score(obj: ObjectPrompt, gt_box: Box, gt_point: Point | None, soft: bool) -> float:
    """Score in [0, 3] of one predicted object against one gt object (see :func:`multi_accuracy`)."""
    score = 0.0
    if obj.box is not None:
        iou, l1 = box_iou(obj.box, gt_box), _box_l1(obj.box, gt_box)
        score += iou if soft else float(iou > BOX_IOU_THRESHOLD)
        score += _decay(l1, BOX_L1_THRESHOLD) if soft else float(l1 < BOX_L1_THRESHOLD)
    if obj.box is not None and obj.points and gt_point is not None and point_in_box(obj.points[0], obj.box):
        dist = math.dist(obj.points[0], gt_point)
        score += _decay(dist, MULTI_POINT_THRESHOLD) if soft else float(dist < MULTI_POINT_THRESHOLD)
    return score


def _multi_score(completion: str, gt: GroundTruth, soft: bool) -> float:
    parsed = _parse(completion, gt.frame)
    if not parsed.ok:
        return 0.0
    # Items the parser rejected still count in M: a garbage object is a wrong object.
    m = len(parsed.raw) if isinstance(parsed.raw, list) else len(parsed.objects)
    n = len(gt.boxes)
    if max(m, n) == 0:
        return 3.0  # nothing asked for, nothing given
    if not parsed.objects or n == 0:
        return 0.0
    gt_points = [pts[0] if pts else None for pts in gt.points] if gt.points else [None] * n
    scores = np.array(
        [[_pair_score(obj, gt.boxes[j], gt_points[j], soft) for j in range(n)] for obj in parsed.objects]
    )
    rows, cols = _assignment(scores, maximize=True)
    return float(scores[rows, cols].sum() / max(m, n))


def multi_accuracy(completion: str, gt: GroundTruth) -> float:
    """In [0, 3]: Hungarian matching (maximised) of M predicted to N gt objects, matched sum / max(M, N).

    Pair score = [IoU > 0.5] + [box L1 < 10 px] + [point distance < 30 px and the point inside its own
    predicted box]. The answer is read by :func:`parse_answer`; each object's first point is used.
    """
    return _multi_score(completion, gt, soft=False)


def multi_accuracy_soft(completion: str, gt: GroundTruth) -> float:
    """As :func:`multi_accuracy`, pair score = IoU + ``2**(-L1/10)`` + [point inside] * ``2**(-dist/30)``."""
    return _multi_score(completion, gt, soft=True)


def non_repeat(completion: str, gt: GroundTruth) -> float:
    """0.0 if one sentence occurs three or more times in the completion, else 1.0 (see the module notes).

    Sentences are the non-empty pieces of ``completion.split(".")``, whitespace stripped. ``gt`` is unused.
    """
    counts = Counter(s for s in (piece.strip() for piece in completion.split(".")) if s)
    return 0.0 if counts and max(counts.values()) >= 3 else 1.0


# --------------------------------------------------------------------------- registry

RewardFn = Callable[[str, GroundTruth], float]

#: Every pure reward by its stable name.
REWARDS: dict[str, RewardFn] = {
    f.__name__: f
    for f in (
        thinking_format,
        seg_format_soft,
        seg_format_strict,
        seg_format_box_only,
        seg_format_points_only,
        bbox_iou,
        bbox_l1,
        points_l1,
        points_l1_no_box,
        bbox_iou_soft,
        bbox_l1_soft,
        points_l1_soft,
        points_l1_no_box_soft,
        multi_format,
        generalized_format,
        multi_accuracy,
        multi_accuracy_soft,
        non_repeat,
    )
}
# The reference release's exact values beside ours: ``<name>_reference`` (segzero.rewards_reference).
REWARDS.update(REFERENCE_REWARDS)

#: Closed range ``(low, high)`` of each reward, ``mask_iou`` included.
REWARD_RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in REWARDS},
    "multi_format": (0.0, 3.0),
    "generalized_format": (0.0, 3.0),
    "multi_accuracy": (0.0, 3.0),
    "multi_accuracy_soft": (0.0, 3.0),
    **REFERENCE_REWARD_RANGES,
    "mask_iou": (0.0, 1.0),
}

#: Rewards that read only the completion; the others need ``reasoner_boxes`` / ``reasoner_points``.
FORMAT_ONLY = frozenset(
    {
        "thinking_format",
        "seg_format_soft",
        "seg_format_strict",
        "seg_format_box_only",
        "seg_format_points_only",
        "multi_format",
        "generalized_format",
        "non_repeat",
    }
    | REFERENCE_FORMAT_ONLY
)

#: The paper's best recipe (strict format, hard accuracy), summed with weight 1 each.
SEGZERO_REWARDS = ("thinking_format", "seg_format_strict", "bbox_iou", "bbox_l1", "points_l1")
#: The ``box_only`` ablation: thinking format, box-only format, the box accuracy rewards.
BOX_ONLY_REWARDS = ("thinking_format", "seg_format_box_only", "bbox_iou", "bbox_l1")
#: The ``points_only`` ablation: thinking format, points-only format, box-free points accuracy.
POINTS_ONLY_REWARDS = ("thinking_format", "seg_format_points_only", "points_l1_no_box")
#: VisionReasoner's multi-object recipe.
VISION_REASONER_REWARDS = ("multi_format", "multi_accuracy", "non_repeat")
#: Zero, one or many objects (the ``generalized`` prompt): VisionReasoner's rewards with a format reward
#: that accepts ``[]``; multi_accuracy already gives an empty answer to a target-free sample the full 3.
GENERALIZED_REWARDS = ("generalized_format", "multi_accuracy", "non_repeat")

#: Every name :func:`trl_reward` accepts.
REWARD_NAMES = (*REWARDS, "mask_iou")


# --------------------------------------------------------------------------- TRL adapters


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, a message dict, or a list of messages.

    Message ``content`` may be a string or a list of parts (``{"type": "text", "text": ...}``);
    non-text parts are skipped. Messages with a role other than ``assistant`` (e.g. tool output in
    a multi-turn rollout) are skipped. Anything else gives ``""``.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    texts = []
    for message in completion:
        if not isinstance(message, Mapping) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, (list, tuple)):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, Mapping)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            )
    return "".join(texts)


def _ground_truths(name: str, n: int, columns: Mapping[str, Any]) -> list[GroundTruth]:
    boxes, points = columns.get("reasoner_boxes"), columns.get("reasoner_points")
    frames = columns.get("reasoner_frame") or [None] * n
    if boxes is None:
        if name not in FORMAT_ONLY:
            raise ValueError(
                f"the reward {name!r} needs the dataset column 'reasoner_boxes' (and 'reasoner_points'); "
                "prepare the training set with segzero's dataset preparation, which writes them"
            )
        return [GroundTruth()] * n
    points = points if points is not None else [None] * n
    if len(boxes) != n or len(points) != n:
        raise ValueError(
            f"got {n} completions but {len(boxes)} ground-truth boxes and {len(points)} point lists"
        )
    return [GroundTruth.from_columns(b, p, f) for b, p, f in zip(boxes, points, frames)]


class TrlReward:
    """A pure reward wrapped for TRL's ``GRPOTrainer``: ``(prompts, completions, **columns) -> list[float]``.

    ``__name__`` is the reward's registry name, which TRL uses to log it (``rewards/<name>/mean``).
    Instances pickle (they hold only the name), so they survive multiprocessing.
    """

    def __init__(self, name: str) -> None:
        if name not in REWARDS:
            raise ValueError(_unknown(name))
        self.name = name
        self.__name__ = name

    def __call__(self, prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        fn = REWARDS[self.name]
        return [float(fn(t, g)) for t, g in zip(texts, _ground_truths(self.name, len(texts), columns))]

    def __repr__(self) -> str:
        return f"TrlReward({self.name!r})"


def _unknown(name: str) -> str:
    return f"unknown reward {name!r}; choose from: {', '.join(REWARD_NAMES)}"


def trl_reward(
    name: str, segmenter: SupportsSegmentMany | None = None, mode: str = "both"
) -> Callable[..., list[float | None]]:
    """The TRL callable for one reward name.

    Args:
        name: one of :data:`REWARD_NAMES`.
        segmenter: needed only for ``"mask_iou"``; see :class:`MaskIoUReward`.
        mode: which prompts the segmenter uses for ``"mask_iou"`` (``"both"``, ``"box"``, ``"points"``).

    Raises:
        ValueError: for an unknown name, or ``"mask_iou"`` without a segmenter.
    """
    if name == "mask_iou":
        if segmenter is None:
            raise ValueError(
                "the 'mask_iou' reward needs a segmenter; pass segmenter=Segmenter.from_pretrained(...)"
            )
        return MaskIoUReward(segmenter, mode=mode)
    return TrlReward(name)


def make_trl_rewards(
    names: Iterable[str], segmenter: SupportsSegmentMany | None = None, mode: str = "both"
) -> list[Callable[..., list[float | None]]]:
    """TRL callables for ``names``, in order (pair them with ``GRPOConfig.reward_weights``)."""
    return [trl_reward(name, segmenter=segmenter, mode=mode) for name in names]


# --------------------------------------------------------------------------- mask IoU (segmenter in the loop)


class SegmenterOutputLike(Protocol):
    mask: np.ndarray


class SupportsSegmentMany(Protocol):
    """What :class:`MaskIoUReward` needs from a segmenter (``segzero.segmenter.Segmenter`` has it)."""

    def segment_many(
        self, images: list[Any], prompts: list[list[ObjectPrompt]], mode: str = "both"
    ) -> Sequence[SegmenterOutputLike]: ...


def _has_rle(rle: Any) -> bool:
    # A prepared dataset stores "no mask" as None, or as a struct of Nones once Arrow has typed it.
    return isinstance(rle, Mapping) and rle.get("counts") is not None and rle.get("size") is not None


def _image_key(image: Any) -> tuple:
    # TRL hands every generation of a prompt its own decoded copy of the image; keying by content lets
    # the segmenter encode each distinct image once per batch instead of once per generation.
    return (image.size, image.mode, hashlib.blake2b(image.tobytes(), digest_size=16).digest())


class MaskIoUReward:
    """``mask_iou``: run the segmenter on each completion's prompts and score the mask against the gt mask.

    Not in the paper (its rewards never see the segmenter); it rewards what evaluation measures.
    Called by TRL as ``(prompts, completions, **columns) -> list[float | None]`` with columns:

    * ``image``: PIL image in its original frame (or ``images``: a list whose first item is used);
    * ``mask_rle``: COCO RLE ``{"size": [H, W], "counts": ...}`` of the target (image frame);
    * ``ignore_rle`` (optional): COCO RLE of the ignore (255) pixels, excluded from the IoU.

    * ``reasoner_frame`` (optional): the frame the completions answer in (default: ``frame``).

    A row without a gt mask (``mask_rle`` None) gets None: TRL's "not applicable", which it leaves
    out of the weighted sum (nansum) instead of counting it as 0.

    Completions go through the pipeline's own second half (:func:`segzero.pipeline.segment_answers`:
    parse, map to the image, segment), one ``segment_many`` call per batch with identical images
    shared so each is encoded once. An unreadable answer scores 0; an explicit empty list scores
    the IoU of an empty mask (1 on a target-free sample, whose gt mask is all zero; 0 where there
    is a target). An answer with objects on a target-free sample scores 0, even if the segmenter
    draws no pixel for them.
    """

    def __init__(
        self, segmenter: SupportsSegmentMany, mode: str = "both", frame: int = REASONER_FRAME
    ) -> None:
        self.segmenter = segmenter
        self.mode = mode
        self.frame = frame
        self.__name__ = "mask_iou"

    def __call__(
        self, prompts: Any = None, completions: Sequence[Any] = (), **columns: Any
    ) -> list[float | None]:
        images = columns.get("image")
        if images is None and columns.get("images") is not None:
            images = [
                imgs[0] if isinstance(imgs, (list, tuple)) and imgs else imgs for imgs in columns["images"]
            ]
        if images is None or columns.get("mask_rle") is None:
            raise ValueError("the 'mask_iou' reward needs the dataset columns 'image' and 'mask_rle'")
        frames = set(columns.get("reasoner_frame") or [self.frame])
        if len(frames) > 1:
            raise ValueError(f"one batch mixes reasoner frames {sorted(frames)}; train on one frame at a time")
        return self.score(
            [completion_text(c) for c in completions], images, columns["mask_rle"], columns.get("ignore_rle"),
            frame=int(frames.pop()),
        )  # fmt: skip

    def score(
        self,
        completions: Sequence[str],
        images: Sequence[Any],
        mask_rles: Sequence[Mapping[str, Any] | None],
        ignore_rles: Sequence[Mapping[str, Any] | None] | None = None,
        frame: int | None = None,
    ) -> list[float | None]:
        """Mask IoU in [0, 1] per completion, None where there is no gt mask (see the class docstring).

        ``frame`` is the reasoner frame the completions answer in (default: the reward's own).
        """
        from segzero.masks import decode_rle
        from segzero.pipeline import segment_answers
        from segzero.protocols import SEGZERO

        n = len(completions)
        if len(images) != n or len(mask_rles) != n:
            raise ValueError(f"got {n} completions but {len(images)} images and {len(mask_rles)} masks")
        ignore_rles = ignore_rles if ignore_rles is not None else [None] * n
        rewards: list[float | None] = [0.0] * n
        todo = [i for i in range(n) if _has_rle(mask_rles[i])]
        for i in set(range(n)) - set(todo):
            rewards[i] = None
        shared: dict[tuple, Any] = {}
        batch_images = [shared.setdefault(_image_key(images[i]), images[i]) for i in todo]
        for i, image in zip(todo, batch_images):
            h, w = (int(v) for v in mask_rles[i]["size"])
            if (h, w) != (image.size[1], image.size[0]):
                raise ValueError(
                    f"sample {i}: the gt mask is {w}x{h} but the image is {image.size[0]}x{image.size[1]}; "
                    "the 'mask_rle' column must be in the original image's frame"
                )
        answers, _, outputs = segment_answers(
            self.segmenter, batch_images, [completions[i] for i in todo], frame or self.frame, self.mode, SEGZERO
        )
        for i, answer, out in zip(todo, answers, outputs, strict=True):
            if not answer.ok:
                continue  # an unreadable answer scores 0
            target = decode_rle(mask_rles[i])
            if answer.objects and not target.any():
                continue  # nothing matches, yet the answer names an object: 0 whatever mask it gets
            ignore = decode_rle(ignore_rles[i]) if _has_rle(ignore_rles[i]) else None
            rewards[i] = mask_iou(np.asarray(out.mask, dtype=bool), target, ignore)
        return rewards

    def __repr__(self) -> str:
        return f"MaskIoUReward(mode={self.mode!r})"
