"""Segmentation metrics of SPEC section 7: per-sample IoU terms, gIoU, cIoU, box accuracy.

Pure functions on numpy arrays and plain numbers; no model, no I/O.

Ground-truth masks are uint8 ``(H, W)``: 0 background, 1 target, 255 ignore (ambiguous regions).
Sums are exact Python integers, so cIoU over thousands of megapixel images loses nothing.

Each protocol (:mod:`segzero.protocols`) scores a mask by its own rules:

=========================  ==================================  ==========================================
                           ``segzero`` (LISA's evaluation)     ``reference`` (SPEC section 9.1)
=========================  ==================================  ==========================================
ignore pixels (255)        in neither the intersection nor     target (its masks are cast to bool)
                           the union
failed answer              intersection 0, union = target      the same, with ignore pixels in the target
union 0 (empty target      IoU 1.0, counted                    a failed answer: IoU 0, counted; a
and prediction)                                                segmented one: left out of every figure
cIoU with all unions 0     1.0                                 0.0
=========================  ==================================  ==========================================
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Sequence

import numpy as np

from segzero.defaults import BOX_IOU_THRESHOLD, IGNORE
from segzero.errors import DatasetError
from segzero.geometry import box_iou, ground_truth_planes, iou_from_terms, mask_iou_terms
from segzero.protocols import REFERENCE, SEGZERO, check_protocol

Box = Sequence[float]


def sample_iou_terms(pred: np.ndarray | None, gt: np.ndarray, protocol: str = SEGZERO) -> tuple[int, int]:
    """Intersection and union of one prediction with its ground truth, in pixels.

    Args:
        pred: bool ``(H, W)`` predicted mask in the image frame, or None when the answer could
            not be parsed (nothing was predicted).
        gt: uint8 ``(H, W)`` with 0 background, 1 target, 255 ignore.
        protocol: ``segzero`` leaves ignore pixels out; ``reference`` counts them as target.

    Returns:
        ``(intersection, union)``. With ``pred=None`` the intersection is 0 and the union is the
        target area, so the sample keeps its place in gIoU and cIoU.

    Raises:
        DatasetError: the ground truth holds other values, or its shape differs from the prediction's.
    """
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise DatasetError(f"A ground-truth mask must be 2-D (H, W), got shape {gt.shape}.")
    if gt.dtype != bool and np.any((gt > 1) & (gt != IGNORE)):
        found = int(gt[(gt > 1) & (gt != IGNORE)][0])
        raise DatasetError(
            f"A ground-truth mask holds the value {found}; only 0, 1 and {IGNORE} (ignore) are allowed."
        )
    target, ignore = ground_truth_planes(gt, ignore_as_target=check_protocol(protocol) == REFERENCE)
    if pred is None:
        return 0, int(np.count_nonzero(target))
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise DatasetError(
            f"The predicted mask is {pred.shape[0]}x{pred.shape[1]} but the ground truth is "
            f"{gt.shape[0]}x{gt.shape[1]}; the dataset's mask does not match its image size."
        )
    return mask_iou_terms(pred, target, ignore)


def box_scores(
    pred_boxes: Sequence[Box | None], gt_boxes: Sequence[Box], threshold: float = BOX_IOU_THRESHOLD
) -> tuple[float | None, bool | None]:
    """Box IoU and box hit of one sample, both in the image frame (inclusive pixel boxes).

    Single object (one predicted, one gt box): the IoU of the two and whether it exceeds
    ``threshold``. Several objects (the multi-object answer, or a single-object gt answered with
    several boxes):

    - ``box_iou`` = sum of IoUs of the one-to-one pairing that maximises that sum, divided by
      ``max(M, N)``; unpaired boxes on either side count 0, as in VisionReasoner's reward.
    - hit = ``M == N`` and some one-to-one pairing has every pair above ``threshold``: all or
      nothing, so a sample that finds two of three objects is a miss.

    Edge cases: no gt box and no predicted box is (1.0, True), like an empty mask on an empty
    target; predicted objects none of which has a box (points-only prompts) give (None, None),
    "not applicable", which box accuracy leaves out. A predicted object without a box among
    others with boxes counts as a box that overlaps nothing.

    Args:
        pred_boxes: per predicted object, ``(x1, y1, x2, y2)`` or None; empty for an unparsed answer.
        gt_boxes: per target object, ``(x1, y1, x2, y2)``.
    """
    if pred_boxes and all(b is None for b in pred_boxes):
        return None, None
    m, n = len(pred_boxes), len(gt_boxes)
    if m == 0 or n == 0:
        return (1.0, True) if m == n else (0.0, False)
    ious = np.array([[0.0 if p is None else box_iou(p, g) for g in gt_boxes] for p in pred_boxes])
    if m == n == 1:
        return float(ious[0, 0]), bool(ious[0, 0] > threshold)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(ious, maximize=True)
    best = float(ious[rows, cols].sum()) / max(m, n)
    above = ious > threshold
    rows, cols = linear_sum_assignment(above, maximize=True)
    return best, bool(m == n and above[rows, cols].sum() == n)


def sample_iou(intersection: int, union: int, protocol: str = SEGZERO) -> float:
    """A sample's IoU from its terms: a union of 0 gives 1.0 under ``segzero`` (an empty prediction on an
    empty target agrees fully) and 0.0 under ``reference`` (its ``I / U if U > 0 else 0``)."""
    if check_protocol(protocol) == REFERENCE and union == 0:
        return 0.0
    return iou_from_terms(intersection, union)


def counted(union: int, parsed: bool, protocol: str = SEGZERO) -> bool:
    """Whether a sample counts in the figures: always under ``segzero``; under ``reference`` not when its
    answer was segmented and the union is 0 (the reference's unpacking raises and skips the sample)."""
    return not (check_protocol(protocol) == REFERENCE and parsed and union == 0)


#: Mask IoU at which a sample counts as a hit in ``hit_rate`` (the mask matches the request).
HIT_IOU = 0.5


class IoUAccumulator:
    """Streaming gIoU / cIoU / box accuracy / parse-failure rate over samples, each counted once, by the
    rules of ``protocol`` (module docstring).

    Example::

        acc = IoUAccumulator()
        acc.add("s1", *sample_iou_terms(pred, gt), box_hit=True, parsed=True)
        acc.summary()["ciou"]
    """

    def __init__(self, protocol: str = SEGZERO) -> None:
        self.protocol = check_protocol(protocol)
        self.left_out = 0
        self._ids: set[Hashable] = set()
        self._ious: list[float] = []
        self.intersection = 0
        self.union = 0
        self.box_hits = 0
        self.box_n = 0
        self.parse_failures = 0
        self.errors = 0

    def __len__(self) -> int:
        return len(self._ious)

    def add(
        self,
        sample_id: Hashable,
        intersection: int,
        union: int,
        box_hit: bool | None = None,
        parsed: bool = True,
        *,
        error: bool = False,
        include: bool = True,
    ) -> None:
        """Count one sample.

        Args:
            sample_id: its id; adding the same id twice is refused (it would count twice).
            intersection, union: integer pixel counts from :func:`sample_iou_terms`.
            box_hit: whether the predicted box(es) match the gt box(es) (see :func:`box_scores`);
                None when not applicable, left out of box accuracy.
            parsed: whether the answer yielded positional prompts; False counts a parse failure.
            error: the pipeline failed on this sample (it still counts, with its terms as given).
            include: False for a sample the protocol leaves out (:func:`counted`): its id is taken, it
                adds to ``left_out`` and to no figure.

        Raises:
            ValueError: a repeated id, non-integer or negative terms, or intersection > union.
        """
        inter, uni = operator.index(intersection), operator.index(union)
        if not 0 <= inter <= uni:
            raise ValueError(f"sample {sample_id!r}: need 0 <= intersection <= union, got {inter} and {uni}")
        if sample_id in self._ids:
            raise ValueError(f"sample {sample_id!r} was added twice; each sample counts once")
        self._ids.add(sample_id)
        if not include:
            self.left_out += 1
            return
        self._ious.append(sample_iou(inter, uni, self.protocol))
        self.intersection += inter
        self.union += uni
        if box_hit is not None:
            self.box_n += 1
            self.box_hits += bool(box_hit)
        if error:
            self.errors += 1
        elif not parsed:
            self.parse_failures += 1

    def summary(self) -> dict[str, float | int | None]:
        """The metrics as fractions in [0, 1] (None where undefined: no samples, no box verdicts).

        Keys: ``n``, ``giou`` (mean per-sample IoU), ``ciou`` (sum of intersections / sum of
        unions; 1.0 when every union is 0), ``intersection`` and ``union`` (exact sums),
        ``hit_rate`` (share of samples whose mask IoU is at least :data:`HIT_IOU`, referring
        segmentation's Prec@0.5), ``box_accuracy`` over the ``box_n`` samples with a verdict,
        ``parse_failures``, ``parse_failure_rate``, ``errors`` (samples the pipeline failed on, not
        parse failures), ``left_out`` (samples the protocol leaves out of every figure, not in ``n``).
        """
        n = len(self._ious)
        return {
            "n": n,
            "giou": math.fsum(self._ious) / n if n else None,
            "ciou": sample_iou(self.intersection, self.union, self.protocol) if n else None,
            "intersection": self.intersection,
            "union": self.union,
            "hit_rate": sum(iou >= HIT_IOU for iou in self._ious) / n if n else None,
            "box_accuracy": self.box_hits / self.box_n if self.box_n else None,
            "box_n": self.box_n,
            "parse_failures": self.parse_failures,
            "parse_failure_rate": self.parse_failures / n if n else None,
            "errors": self.errors,
            "left_out": self.left_out,
        }
