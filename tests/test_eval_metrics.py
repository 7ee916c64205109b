"""Metrics of SPEC section 7 on hand-computed masks: ignore pixels, empty masks, unparseable answers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from segzero.errors import DatasetError
from segzero.evaluation.metrics import IoUAccumulator, box_scores, iou_from_terms, sample_iou_terms

I = 255  # ignore


def _gt() -> np.ndarray:
    # target: 4 pixels (row 0, cols 0..3); ignore: 2 pixels (row 1, cols 0..1)
    return np.array(
        [
            [1, 1, 1, 1],
            [I, I, 0, 0],
            [0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )


def test_ignore_pixels_count_in_neither_intersection_nor_union():
    pred = np.array(
        [
            [1, 1, 0, 0],  # 2 target pixels hit
            [1, 1, 1, 0],  # 2 on ignore (not counted), 1 false positive
            [0, 0, 0, 0],
        ],
        dtype=bool,
    )
    # intersection 2; union = 4 target + 1 false positive = 5
    assert sample_iou_terms(pred, _gt()) == (2, 5)


def test_prediction_only_on_ignore_is_as_good_as_nothing():
    pred = np.zeros((3, 4), dtype=bool)
    pred[1, :2] = True
    assert sample_iou_terms(pred, _gt()) == (0, 4)


def test_ignore_never_becomes_foreground():
    gt = np.full((2, 2), I, dtype=np.uint8)
    pred = np.ones((2, 2), dtype=bool)
    assert sample_iou_terms(pred, gt) == (0, 0)
    assert iou_from_terms(0, 0) == 1.0


def test_empty_prediction_on_empty_target_is_iou_one():
    gt = np.zeros((3, 3), dtype=np.uint8)
    inter, union = sample_iou_terms(np.zeros((3, 3), dtype=bool), gt)
    assert (inter, union) == (0, 0)
    assert iou_from_terms(inter, union) == 1.0


def test_empty_prediction_on_target_is_iou_zero():
    inter, union = sample_iou_terms(np.zeros((3, 4), dtype=bool), _gt())
    assert (inter, union) == (0, 4)
    assert iou_from_terms(inter, union) == 0.0


def test_unparseable_answer_keeps_its_place_with_union_equal_to_target_area():
    assert sample_iou_terms(None, _gt()) == (0, 4)


def test_perfect_prediction_ignores_what_it_says_on_ignore_pixels():
    pred = _gt() != 0  # target and ignore
    assert sample_iou_terms(pred, _gt()) == (4, 4)


def test_bad_ground_truth_is_refused_with_a_sentence():
    gt = _gt()
    gt[2, 2] = 7
    with pytest.raises(DatasetError, match="value 7"):
        sample_iou_terms(None, gt)
    with pytest.raises(DatasetError, match="does not match its image size"):
        sample_iou_terms(np.zeros((4, 4), dtype=bool), _gt())


def test_accumulator_giou_and_ciou_are_exact():
    acc = IoUAccumulator()
    acc.add("a", 1, 2, box_hit=True, parsed=True)  # IoU 1/2
    acc.add("b", 0, 3, box_hit=False, parsed=False)  # unparseable: IoU 0
    acc.add("c", 0, 0, box_hit=None, parsed=True)  # empty/empty: IoU 1
    acc.add("d", np.int64(2), np.int64(3), box_hit=True)  # IoU 2/3
    s = acc.summary()
    assert s["n"] == 4
    assert s["giou"] == pytest.approx(float((Fraction(1, 2) + 0 + 1 + Fraction(2, 3)) / 4), abs=0)
    assert Fraction(s["intersection"], s["union"]) == Fraction(3, 8)
    assert s["ciou"] == 3 / 8
    assert s["box_n"] == 3 and s["box_accuracy"] == pytest.approx(2 / 3)
    assert s["hit_rate"] == 3 / 4  # IoU 1/2 counts as a hit (>= 0.5), 0 does not
    assert s["parse_failures"] == 1 and s["parse_failure_rate"] == 0.25
    assert type(s["intersection"]) is int and type(s["union"]) is int


def test_accumulator_sums_beyond_float32_exactly():
    acc = IoUAccumulator()
    big = 2**40 + 1
    for i in range(3):
        acc.add(i, big, big + 1)
    s = acc.summary()
    assert s["intersection"] == 3 * big and s["union"] == 3 * (big + 1)
    assert s["ciou"] == (3 * big) / (3 * (big + 1))


def test_accumulator_refuses_double_counting_and_bad_terms():
    acc = IoUAccumulator()
    acc.add("a", 1, 2)
    with pytest.raises(ValueError, match="twice"):
        acc.add("a", 1, 2)
    with pytest.raises(ValueError, match="intersection <= union"):
        acc.add("b", 3, 2)
    with pytest.raises(TypeError):
        acc.add("c", 1.0, 2)
    assert len(acc) == 1


def test_accumulator_empty_summary_is_undefined_not_zero():
    s = IoUAccumulator().summary()
    assert s["n"] == 0 and s["giou"] is None and s["ciou"] is None and s["box_accuracy"] is None


def test_errors_are_counted_apart_from_parse_failures():
    acc = IoUAccumulator()
    acc.add("a", 0, 5, parsed=False, error=True)
    acc.add("b", 0, 5, parsed=False)
    s = acc.summary()
    assert s["errors"] == 1 and s["parse_failures"] == 1 and s["n"] == 2


def test_box_scores_single_object_uses_inclusive_iou():
    # (0,0,9,9) vs (0,0,9,4): areas 100 and 50, inclusive intersection 50 -> IoU 0.5, not a hit (> 0.5 needed)
    assert box_scores([(0, 0, 9, 9)], [(0, 0, 9, 4)]) == (0.5, False)
    iou, hit = box_scores([(0, 0, 9, 9)], [(0, 0, 9, 5)])
    assert iou == pytest.approx(0.6) and hit is True


def test_box_scores_multi_object_needs_every_object_matched_one_to_one():
    a, b, c = (0, 0, 9, 9), (100, 100, 119, 119), (300, 0, 309, 9)
    assert box_scores([b, a], [a, b]) == (1.0, True)  # order does not matter
    iou, hit = box_scores([a, b], [a, b, c])  # one object missed
    assert hit is False and iou == pytest.approx(2 / 3)
    iou, hit = box_scores([a, b, c], [a, b])  # one extra box
    assert hit is False and iou == pytest.approx(2 / 3)


def test_box_scores_finds_the_matching_a_greedy_pairing_would_miss():
    g1, g2 = (0, 0, 9, 9), (0, 0, 9, 15)  # overlapping targets, areas 100 and 160
    p1, p2 = (0, 0, 9, 10), (0, 0, 9, 5)  # areas 110 and 60
    # IoUs: p1-g1 0.909, p1-g2 0.6875, p2-g1 0.6, p2-g2 0.375. Greedy takes p1-g1 and leaves p2-g2
    # below 0.5; the pairing p1-g2, p2-g1 has both above, so the sample is a hit.
    assert box_scores([p1, p2], [g1, g2])[1] is True


def test_box_scores_edge_cases():
    assert box_scores([], []) == (1.0, True)
    assert box_scores([], [(0, 0, 5, 5)]) == (0.0, False)  # unparsed answer
    assert box_scores([(0, 0, 5, 5)], []) == (0.0, False)
    assert box_scores([None], [(0, 0, 5, 5)]) == (None, None)  # points-only answer: not applicable
    iou, hit = box_scores([None, (0, 0, 5, 5)], [(0, 0, 5, 5)])
    assert hit is False and iou == pytest.approx(0.5)


def test_giou_uses_an_exactly_rounded_sum():
    acc = IoUAccumulator()
    values = [(1, 3)] * 30 + [(0, 0)] * 7
    for i, (inter, union) in enumerate(values):
        acc.add(i, inter, union)
    assert acc.summary()["giou"] == math.fsum([1 / 3] * 30 + [1.0] * 7) / 37


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of PIL and torch it imported."""
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in ('PIL', 'torch')}))"
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_pure_half_imports_without_pil_or_torch():
    none = {"PIL": False, "torch": False}
    assert _loaded_after("import segzero.evaluation.metrics") == none
    pure = (
        "import segzero.evaluation as E, segzero.evaluation.results, segzero.evaluation.report\n"
        "assert E.PAPER_RESULTS and E.IoUAccumulator and E.summarize_run"
    )
    assert _loaded_after(pure) == none
    # The probe sees PIL when a module does load it: the contact sheet draws with PIL.
    assert _loaded_after("import segzero.evaluation as E\nE.render_contact_sheet")["PIL"]
