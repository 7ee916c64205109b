"""Rewards (SPEC section 4): hand-computed values, edge cases, TRL adapters, and the mask-IoU bookkeeping."""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero import rewards as R
from segzero.frames import Frame, ObjectPrompt
from segzero.rewards import GroundTruth

GT = GroundTruth(boxes=[(100, 100, 199, 199)], points=[((120, 130), (180, 170))])


def single(box, p1, p2, think: str = "the cup on the left", quote: str = '"') -> str:
    """A well-formed single-object completion (JSON by default)."""
    body = json.dumps({"bbox": list(box), "points_1": list(p1), "points_2": list(p2)})
    return f"<think>{think}</think><answer>{body.replace(chr(34), quote)}</answer>"


GOOD = single((100, 100, 199, 199), (120, 130), (180, 170))


def in_answer(answer: str) -> str:
    """A completion that thinks briefly and answers ``answer``."""
    return f"<think>t</think><answer>{answer}</answer>"


def gt_box(box) -> GroundTruth:
    return GroundTruth(boxes=[box], points=[((0, 0), (0, 0))])


# --------------------------------------------------------------------------- thinking format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 1.0),
        ("<think>a\nb</think>\n  <answer>\n{}\n</answer>", 1.0),  # DOTALL; whitespace between the blocks
        ("<think></think><answer></answer>", 1.0),
        ("Sure. " + GOOD, 0.0),  # text before <think>
        (GOOD + " done", 0.0),  # text after </answer>
        (GOOD + "\n", 0.0),  # full match: not even a trailing newline
        ("<think>x</think> so <answer>{}</answer>", 0.0),  # text between the blocks
        ('<answer>{"bbox": [1, 2, 3, 4]}</answer>', 0.0),  # missing think
        ("<think>x</think>", 0.0),
        ("<think>x<answer>{}</answer>", 0.0),  # unclosed think
    ],
)
def test_thinking_format(text, expected):
    assert R.thinking_format(text, GT) == expected


# --------------------------------------------------------------------------- segmentation format


@pytest.mark.parametrize(
    ("answer", "soft", "strict"),
    [
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 1.0, 1.0),
        ('{"points_2": [3, 4], "bbox": [1, 2, 3, 4], "points_1": [1, 2]}', 1.0, 1.0),  # other key order
        ('{"bbox": [1.5, 2, 3, 4.25], "points_1": [1, 2.5], "points_2": [3, 4]}', 1.0, 1.0),  # floats
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4], "label": "cup"}', 1.0, 0.0),
        ('{"bbox_2d": [1, 2, 3, 4], "point_a": [1, 2], "Points_b": [3, 4]}', 1.0, 0.0),  # soft: substrings
        ('{"BBox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 1.0, 0.0),  # soft: any case
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2]}', 0.0, 0.0),  # only one point
        ('{"bbox": [1, 2, 3], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),  # box arity
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2, 3], "points_2": [3, 4]}', 0.0, 0.0),  # point arity
        ('{"bbox": [1, 2, 3, 4], "points_1": [[1, 2]], "points_2": [3, 4]}', 0.0, 0.0),  # nested point
        (
            '{"bbox": [NaN, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}',
            0.0,
            0.0,
        ),  # json.loads takes NaN
        ('{"bbox": [Infinity, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),
        ('{"bbox": [true, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),  # bool
        ('{"bbox": ["1", 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),  # string
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]', 0.0, 0.0),  # unclosed
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4],}', 0.0, 0.0),  # trailing comma
        ("{'bbox': [1, 2, 3, 4], 'points_1': [1, 2], 'points_2': [3, 4]}", 0.0, 0.0),  # Python quotes
        ('here: {"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]} ok', 1.0, 1.0),  # text around
        ('[{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}]', 1.0, 1.0),  # first {...}
        ('{"note": "x"} {"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),  # 1st
        ("no json here", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_seg_format(answer, soft, strict):
    text = in_answer(answer)
    assert R.seg_format_soft(text, GT) == soft
    assert R.seg_format_strict(text, GT) == strict


def test_seg_format_looks_in_the_answer_not_the_thinking():
    answer = '{"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}'
    text = f'<think>maybe {{"bbox": 1}} or {{x}}</think><answer>{answer}</answer>'
    assert R.seg_format_strict(text, GT) == 1.0
    # Without answer tags the text outside <think> is the answer.
    bare = '<think>{oops}</think> {"bbox": [1,2,3,4], "points_1": [1,2], "points_2": [3,4]}'
    assert R.seg_format_strict(bare, GT) == 1.0
    assert R.thinking_format(bare, GT) == 0.0


def test_single_quotes_fail_format_but_score_accuracy():
    text = single((100, 100, 199, 199), (120, 130), (180, 170), quote="'")
    assert "'bbox'" in text
    assert R.seg_format_soft(text, GT) == R.seg_format_strict(text, GT) == 0.0
    assert R.thinking_format(text, GT) == 1.0
    assert R.bbox_iou(text, GT) == R.bbox_l1(text, GT) == R.points_l1(text, GT) == 1.0


# --------------------------------------------------------------------------- bbox IoU / L1


@pytest.mark.parametrize(
    ("pred", "gt", "iou"),
    [
        ((0, 0, 9, 9), (0, 0, 9, 9), 1.0),
        ((0, 0, 9, 9), (5, 0, 14, 9), 50 / 150),  # inclusive: 10x10 boxes, 5x10 overlap
        ((0, 0, 9, 9), (9, 0, 18, 9), 10 / 190),  # touching on one pixel column: they overlap
        ((0, 0, 9, 9), (10, 0, 19, 9), 0.0),  # adjacent, no shared pixel
        ((0, 0, 9, 9), (0, 0, 9, 19), 0.5),  # exactly 0.5: not > 0.5
        ((0, 0, 9, 9), (0, 0, 9, 18), 100 / 190),  # just above
        ((9, 9, 0, 0), (0, 0, 9, 9), 1.0),  # swapped corners are ordered by the parser
    ],
)
def test_bbox_iou(pred, gt, iou):
    text = single(pred, (1, 1), (2, 2))
    assert R.bbox_iou_soft(text, gt_box(gt)) == pytest.approx(iou)
    assert R.bbox_iou(text, gt_box(gt)) == (1.0 if iou > 0.5 else 0.0)


@pytest.mark.parametrize(
    ("pred", "gt", "l1"),
    [
        ((10, 10, 50, 50), (10, 10, 50, 50), 0.0),
        ((10, 10, 50, 50), (19, 19, 59, 59), 9.0),
        ((10, 10, 50, 50), (20, 20, 60, 60), 10.0),  # exactly the threshold: not < 10
        ((10, 10, 50, 50), (10, 10, 50, 90), 10.0),  # one coordinate off by 40
        ((10, 10, 50, 50), (40, 40, 80, 80), 30.0),
    ],
)
def test_bbox_l1(pred, gt, l1):
    text = single(pred, (20, 20), (30, 30))
    assert R.bbox_l1(text, gt_box(gt)) == (1.0 if l1 < 10 else 0.0)
    assert R.bbox_l1_soft(text, gt_box(gt)) == pytest.approx(2 ** (-l1 / 10))


def test_soft_forms_cross_one_half_at_the_hard_threshold():
    assert R.bbox_l1_soft(single((0, 0, 10, 10), (1, 1), (2, 2)), gt_box((10, 10, 20, 20))) == 0.5
    assert R.bbox_iou_soft(single((0, 0, 9, 9), (1, 1), (2, 2)), gt_box((0, 0, 9, 19))) == 0.5


# --------------------------------------------------------------------------- points


def pts_gt(p1, p2) -> GroundTruth:
    return GroundTruth(boxes=[(0, 0, 400, 400)], points=[(p1, p2)])


def test_points_better_pairing():
    # Predicted in the other order: the swapped pairing has distance 0, the given one 141.4.
    text = single((0, 0, 100, 100), (100, 100), (0, 0))
    gt = pts_gt((0, 0), (100, 100))
    assert R.points_l1(text, gt) == 1.0
    assert R.points_l1_soft(text, gt) == 1.0


def test_points_on_the_border_are_inside():
    text = single((0, 0, 100, 100), (0, 100), (100, 0))  # two corners of the box
    assert R.points_l1(text, pts_gt((0, 100), (100, 0))) == 1.0


def test_points_distance_threshold_is_strict():
    # Straight pairing: 100 and 100 (mean 100); swapped: sqrt(100^2 + 40^2) = 107.7 each.
    text = single((0, 0, 200, 200), (10, 10), (10, 50))
    gt = pts_gt((110, 10), (110, 50))
    assert R.points_l1(text, gt) == 0.0
    assert R.points_l1_soft(text, gt) == pytest.approx(0.5)
    near = single((0, 0, 200, 200), (11, 10), (11, 50))  # mean 99
    assert R.points_l1(near, gt) == 1.0
    assert R.points_l1_soft(near, gt) == pytest.approx(2 ** (-99 / 100))


def test_point_outside_the_predicted_box():
    text = single((0, 0, 50, 50), (10, 10), (60, 10))  # second point right of the box
    gt = pts_gt((10, 10), (60, 10))  # distance 0
    assert R.points_l1(text, gt) == 0.0
    assert R.points_l1_soft(text, gt) == 0.5  # half the points inside
    both_out = single((0, 0, 5, 5), (10, 10), (60, 10))
    assert R.points_l1_soft(both_out, gt) == 0.0


def test_points_wrong_count_or_no_box():
    three = (
        '<think>t</think><answer>{"bbox": [0,0,99,99], "points_1": [1,1], "points_2": [2,2], '
        '"points_3": [3,3]}</answer>'
    )
    gt = pts_gt((1, 1), (2, 2))
    assert R.points_l1(three, gt) == R.points_l1_soft(three, gt) == 0.0
    no_box = '<think>t</think><answer>{"points_1": [1,1], "points_2": [2,2]}</answer>'
    assert R.points_l1(no_box, gt) == R.points_l1_soft(no_box, gt) == 0.0
    assert R.bbox_iou(no_box, gt) == R.bbox_l1_soft(no_box, gt) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<think>I cannot see it</think><answer>none</answer>",
        '<think>t</think><answer>{"bbox": [100,100,199,199], "points_1": [120,130], "points_2": [180',
        '<answer>{"bbox": [NaN,100,199,199], "points_1": [120,130], "points_2": [180,170]}</answer>',
        '<answer>{"bbox": [100,100,199], "points_1": [120,130], "points_2": [180,170]}</answer>',
        "<answer>{'bbox': [100,100,199,199], 'points_1': [120,130], 'points_2': [180,170]</answer>",  # no '}'
    ],
)
def test_unreadable_answers_score_zero(text):
    for name in ("bbox_iou", "bbox_l1", "points_l1", "bbox_iou_soft", "bbox_l1_soft", "points_l1_soft"):
        assert R.REWARDS[name](text, GT) == 0.0, name


def test_missing_think_still_scores_accuracy():
    text = GOOD.split("</think>")[1]
    assert R.thinking_format(text, GT) == 0.0
    assert R.seg_format_strict(text, GT) == 1.0
    assert R.bbox_iou(text, GT) == R.bbox_l1(text, GT) == R.points_l1(text, GT) == 1.0


def test_no_ground_truth_scores_zero():
    assert R.bbox_iou_soft(GOOD, GroundTruth()) == 0.0
    assert R.points_l1(GOOD, GroundTruth()) == 0.0


# --------------------------------------------------------------------------- box-only, points-only ablations


@pytest.mark.parametrize(
    ("answer", "box_only", "points_only"),
    [
        ('{"bbox": [1, 2, 3, 4]}', 1.0, 0.0),
        ('{"bbox": [1.5, 2, 3, 4.25]}', 1.0, 0.0),
        ('{"points_1": [1, 2], "points_2": [3, 4]}', 0.0, 1.0),
        ('{"points_2": [3, 4], "points_1": [1, 2]}', 0.0, 1.0),  # other key order
        ('{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}', 0.0, 0.0),  # the full answer
        ('{"bbox": [1, 2, 3, 4], "label": "cup"}', 0.0, 0.0),  # extra key
        ('{"points_1": [1, 2], "points_2": [3, 4], "points_3": [5, 6]}', 0.0, 0.0),  # a third point
        ('{"points_1": [1, 2]}', 0.0, 0.0),  # one point
        ('{"bbox_2d": [1, 2, 3, 4]}', 0.0, 0.0),  # strict key names
        ('{"point_1": [1, 2], "point_2": [3, 4]}', 0.0, 0.0),
        ('{"bbox": [1, 2, 3]}', 0.0, 0.0),  # box arity
        ('{"bbox": [1, 2, 3, 4, 5]}', 0.0, 0.0),
        ('{"points_1": [1, 2, 3], "points_2": [3, 4]}', 0.0, 0.0),  # point arity
        ('{"points_1": [[1, 2]], "points_2": [3, 4]}', 0.0, 0.0),  # nested point
        ('{"bbox": [NaN, 2, 3, 4]}', 0.0, 0.0),
        ('{"points_1": [true, 2], "points_2": [3, 4]}', 0.0, 0.0),
        ("{'bbox': [1, 2, 3, 4]}", 0.0, 0.0),  # Python quotes, as the other format rewards
        ('box: {"bbox": [1, 2, 3, 4]} done', 1.0, 0.0),  # text around the object inside the answer
        ('{"points_1": [1, 2], "points_2": [3, 4]} and more', 0.0, 1.0),
        ('[{"bbox": [1, 2, 3, 4]}]', 1.0, 0.0),  # the first {...}
        ('{"bbox": [1, 2, 3, 4]', 0.0, 0.0),  # unclosed
        ("", 0.0, 0.0),
    ],
)
def test_box_only_and_points_only_format(answer, box_only, points_only):
    rewards = (R.seg_format_box_only, R.seg_format_points_only)
    assert [fn(in_answer(answer), GT) for fn in rewards] == [box_only, points_only]


def test_ablation_formats_read_the_answer_not_the_text_outside_it():
    box = '{"bbox": [1, 2, 3, 4]}'
    points = '{"points_1": [1, 2], "points_2": [3, 4]}'
    # A decoy in the thinking and text outside the tags: the format rewards read the answer only; the
    # thinking format is what penalises the text outside.
    for decoy, answer, fn in ((points, box, R.seg_format_box_only), (box, points, R.seg_format_points_only)):
        text = f"Sure. <think>not {decoy}</think><answer>{answer}</answer> Done."
        assert fn(text, GT) == 1.0
        assert R.thinking_format(text, GT) == 0.0
        # The decoy alone, in the thinking, earns nothing.
        assert fn(f"<think>{answer}</think><answer>none</answer>", GT) == 0.0
    # Without answer tags, the text outside <think> is the answer.
    assert R.seg_format_points_only(f"<think>{{x}}</think> {points}", GT) == 1.0


def points_only(p1, p2) -> str:
    return in_answer(json.dumps({"points_1": list(p1), "points_2": list(p2)}))


def test_points_l1_no_box_scores_a_points_only_answer():
    gt = pts_gt((0, 0), (100, 100))
    text = points_only((100, 100), (0, 0))  # the swapped pairing has distance 0
    assert R.points_l1(text, gt) == 0.0  # no predicted box: the box test always fails
    assert R.points_l1_no_box(text, gt) == 1.0
    assert R.points_l1_no_box_soft(text, gt) == 1.0


def test_points_l1_no_box_threshold_and_soft_form():
    # Straight pairing: 100 and 100 (mean 100); swapped: sqrt(100^2 + 40^2) = 107.7 each.
    gt = pts_gt((110, 10), (110, 50))
    at = points_only((10, 10), (10, 50))
    assert R.points_l1_no_box(at, gt) == 0.0  # exactly 100: not < 100
    assert R.points_l1_no_box_soft(at, gt) == pytest.approx(0.5)
    near = points_only((11, 10), (11, 50))  # mean 99
    assert R.points_l1_no_box(near, gt) == 1.0
    assert R.points_l1_no_box_soft(near, gt) == pytest.approx(2 ** (-99 / 100))
    # Unequal distances: (0,0)->(30,40) is 50, (200,0)->(200,150) is 150; mean 100. Swapped is worse:
    # (0,0)->(200,150) = 250 and (200,0)->(30,40) = sqrt(170^2 + 40^2) = 174.6.
    far = points_only((0, 0), (200, 0))
    gt2 = pts_gt((30, 40), (200, 150))
    assert R.points_l1_no_box(far, gt2) == 0.0
    assert R.points_l1_no_box_soft(far, gt2) == pytest.approx(0.5)


def test_points_l1_no_box_ignores_a_box():
    # With a box the points lie outside of: points_l1 is 0, the box-free reward does not look at the box.
    text = single((0, 0, 5, 5), (120, 130), (180, 170))
    assert R.points_l1(text, GT) == 0.0 and R.points_l1_soft(text, GT) == 0.0
    assert R.points_l1_no_box(text, GT) == R.points_l1_no_box_soft(text, GT) == 1.0


def test_points_l1_no_box_wrong_arity_or_count():
    gt = pts_gt((1, 1), (2, 2))
    for text in (
        '<think>t</think><answer>{"points_1": [1,1], "points_2": [2,2], "points_3": [3,3]}</answer>',
        '<think>t</think><answer>{"points_1": [1,1]}</answer>',
        '<think>t</think><answer>{"points_1": [1,1,1], "points_2": [2,2]}</answer>',
        '<think>t</think><answer>{"bbox": [0,0,9,9]}</answer>',
        "<think>t</think><answer>none</answer>",
    ):
        assert R.points_l1_no_box(text, gt) == R.points_l1_no_box_soft(text, gt) == 0.0, text
    assert R.points_l1_no_box(points_only((1, 1), (2, 2)), GroundTruth()) == 0.0


def test_ablation_totals_of_perfect_answers():
    box = '<think>t</think><answer>{"bbox": [100, 100, 199, 199]}</answer>'
    assert sum(R.REWARDS[n](box, GT) for n in R.BOX_ONLY_REWARDS) == 4.0
    points = points_only((180, 170), (120, 130))
    assert sum(R.REWARDS[n](points, GT) for n in R.POINTS_ONLY_REWARDS) == 3.0
    # The full answer under the points-only rewards loses exactly its format reward.
    assert sum(R.REWARDS[n](GOOD, GT) for n in R.POINTS_ONLY_REWARDS) == 2.0


# --------------------------------------------------------------------------- multi-object


def multi(items, think: str = "t") -> str:
    return f"<think>{think}</think><answer>{json.dumps(items)}</answer>"


def obj(box, point) -> dict:
    return {"bbox_2d": list(box), "point_2d": list(point)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (multi([obj((1, 2, 3, 4), (1, 2))]), 3.0),
        (multi([obj((1, 2, 3, 4), (1, 2)), {"bbox_2d": [1, 2, 3], "point_2d": [1, 2]}]), 1 + 3 / 2),
        (multi([obj((1, 2, 3, 4), (1, 2)), 5]), 1 + 2 / 2),  # a non-object item scores 0
        (multi([{"bbox_2d": [1, 2, 3, 4]}]), 2.0),
        (multi([]), 1.0),  # empty list: no item credit
        (multi(obj((1, 2, 3, 4), (1, 2))), 1.0),  # a bare object is not a list
        ("<answer>" + json.dumps([obj((1, 2, 3, 4), (1, 2))]) + "</answer>", 2.0),  # no think
        ("<think>t</think><answer>[{'bbox_2d': [1,2,3,4], 'point_2d': [1,2]}]</answer>", 1.0),  # not JSON
        ('<think>t</think><answer>[{"bbox_2d": [1,2,3,4]</answer>', 1.0),  # malformed
    ],
)
def test_multi_format(text, expected):
    assert R.multi_format(text, GT) == pytest.approx(expected)


GT_AB = GroundTruth(boxes=[(0, 0, 99, 99), (200, 200, 299, 299)], points=[((50, 50),), ((250, 250),)])


def test_multi_accuracy_more_predictions_than_gt():
    text = multi(
        [
            obj((200, 200, 299, 299), (250, 250)),  # B exactly: 3
            obj((0, 0, 99, 99), (60, 50)),  # A: IoU 1, L1 0, point 10 px away and inside: 3
            obj((500, 500, 600, 600), (550, 550)),  # matches nothing
        ]
    )
    assert R.multi_accuracy(text, GT_AB) == pytest.approx(6 / 3)


def test_multi_accuracy_fewer_predictions_than_gt():
    text = multi([obj((0, 0, 99, 99), (60, 50))])
    assert R.multi_accuracy(text, GT_AB) == pytest.approx(3 / 2)
    # The soft form: IoU 1 + 2^0 + 2^(-10/30), over max(M, N) = 2.
    assert R.multi_accuracy_soft(text, GT_AB) == pytest.approx((2 + 2 ** (-1 / 3)) / 2)


def test_multi_accuracy_uses_the_optimal_matching_not_greedy():
    gt = GroundTruth(boxes=[(0, 0, 99, 99), (0, 0, 99, 139)], points=[((50, 50),), ((50, 100),)])
    # p1 vs A: IoU 100/120, L1 5, point 20 px -> 3; vs B: IoU 120/140, L1 5, point 30 px (not < 30) -> 2.
    # p2 vs A: 3; vs B: IoU 100/140, L1 10 (not < 10), point 50 px -> 1.
    # Greedy p1->A, p2->B = 4; optimal p1->B, p2->A = 5.
    text = multi([obj((0, 0, 99, 119), (50, 70)), obj((0, 0, 99, 99), (50, 50))])
    assert R.multi_accuracy(text, gt) == pytest.approx(5 / 2)


def test_multi_accuracy_point_must_be_inside_its_own_box():
    # Box matches A; the point is at A's gt point but outside the predicted box.
    text = multi([obj((0, 0, 40, 40), (50, 50))])
    gt = GroundTruth(boxes=[(0, 0, 40, 40)], points=[((50, 50),)])
    assert R.multi_accuracy(text, gt) == 2.0


def test_multi_accuracy_rejected_items_still_count():
    text = multi([obj((0, 0, 99, 99), (50, 50)), {"bbox_2d": "nope"}])
    gt = GroundTruth(boxes=[(0, 0, 99, 99)], points=[((50, 50),)])
    assert R.multi_accuracy(text, gt) == pytest.approx(3 / 2)


def test_multi_accuracy_empty_cases():
    empty = GroundTruth()
    assert R.multi_accuracy(multi([]), empty) == 3.0
    assert R.multi_accuracy(multi([]), GT_AB) == 0.0
    assert R.multi_accuracy("<think>t</think><answer>nothing</answer>", empty) == 0.0
    assert R.multi_accuracy(multi([obj((0, 0, 9, 9), (1, 1))]), empty) == 0.0


# --------------------------------------------------------------------------- non-repeat


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The cup is red. It is on the left. The cup is red.", 1.0),  # one repeat: occurs again once
        ("The cup is red. The cup is red. The cup is red.", 0.0),  # occurs again twice
        ("A. B. A. B.", 1.0),  # two sentences, each occurring again once
        ("A .  A.\nA", 0.0),  # surrounding whitespace is ignored
        ("Wait... wait... hmm...", 1.0),  # empty pieces are not sentences
        ("a. A. a", 1.0),  # otherwise exact: case matters
        ("", 1.0),
    ],
)
def test_non_repeat(text, expected):
    assert R.non_repeat(text, GT) == expected


# --------------------------------------------------------------------------- registry and ranges

TEXT_PIECES = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "{",
    "}",
    "[",
    "]",
    '"bbox"',
    "'bbox'",
    '"bbox_2d"',
    '"points_1"',
    '"points_2"',
    '"point_2d"',
    ":",
    ",",
    ".",
    " ",
    "\n",
    "NaN",
    "-1e400",
    "1e999",
    "12",
    "840",
    "-3.5",
    "true",
    "null",
    "99999999999999999999999",
]

texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(TEXT_PIECES), max_size=60).map("".join),
)
gts = st.sampled_from([GT, GT_AB, GroundTruth(), gt_box((0, 0, 840, 840))])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, gt=gts)
def test_every_reward_is_a_float_in_range_and_never_raises(text, gt):
    for name, fn in R.REWARDS.items():
        value = fn(text, gt)
        low, high = R.REWARD_RANGES[name]
        assert isinstance(value, float), name
        assert not math.isnan(value), name
        assert low <= value <= high, (name, value)


def test_registry_names_are_stable():
    # The reference-exact twins ("<name>_reference") are checked in test_rewards_reference.py.
    assert {n for n in R.REWARDS if not n.endswith("_reference")} == {
        "thinking_format",
        "seg_format_soft",
        "seg_format_strict",
        "seg_format_box_only",
        "seg_format_points_only",
        "bbox_iou",
        "bbox_l1",
        "points_l1",
        "points_l1_no_box",
        "bbox_iou_soft",
        "bbox_l1_soft",
        "points_l1_soft",
        "points_l1_no_box_soft",
        "multi_format",
        "multi_accuracy",
        "multi_accuracy_soft",
        "non_repeat",
    }
    assert set(R.REWARD_RANGES) == set(R.REWARD_NAMES)
    assert set(R.SEGZERO_REWARDS) <= set(R.REWARDS) and set(R.VISION_REASONER_REWARDS) <= set(R.REWARDS)
    assert set(R.BOX_ONLY_REWARDS) | set(R.POINTS_ONLY_REWARDS) <= set(R.REWARDS)
    assert all(fn.__name__ == name for name, fn in R.REWARDS.items())


def test_paper_total_reward_of_a_perfect_answer_is_five():
    assert sum(R.REWARDS[n](GOOD, GT) for n in R.SEGZERO_REWARDS) == 5.0


def test_ground_truth_validation():
    assert GroundTruth.from_columns([[1, 2, 3, 4]], [[[1, 2], [3, 4]]]).points == (((1.0, 2.0), (3.0, 4.0)),)
    assert GroundTruth.from_columns(np.array([[1, 2, 3, 4]]), None).boxes == ((1.0, 2.0, 3.0, 4.0),)
    with pytest.raises(ValueError, match="ground truth"):
        GroundTruth(boxes=[(1, 2, 3)])
    with pytest.raises(ValueError, match="ground truth"):
        GroundTruth(boxes=[(1, 2, 3, float("nan"))])
    with pytest.raises(ValueError, match="2 boxes but points for 1"):
        GroundTruth(boxes=[(1, 2, 3, 4), (1, 2, 3, 4)], points=[((1, 2),)])


# --------------------------------------------------------------------------- TRL adapters


@pytest.mark.parametrize(
    "completion",
    [
        GOOD,
        [{"role": "assistant", "content": GOOD}],
        {"role": "assistant", "content": GOOD},
        [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": GOOD[:20]}, {"type": "text", "text": GOOD[20:]}],
            }
        ],
        [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": GOOD}]}],
        [{"role": "tool", "content": "ignored"}, {"role": "assistant", "content": GOOD}],
    ],
)
def test_completion_text(completion):
    assert R.completion_text(completion) == GOOD


def test_completion_text_of_odd_values():
    assert R.completion_text(None) == ""
    assert R.completion_text(42) == ""
    assert R.completion_text([{"role": "assistant", "content": None}]) == ""


def test_trl_reward_batch_with_columns():
    fn = R.trl_reward("bbox_iou")
    assert fn.__name__ == "bbox_iou"
    bad = single((500, 500, 600, 600), (1, 1), (2, 2))
    out = fn(
        prompts=["p", "p"],
        completions=[[{"role": "assistant", "content": GOOD}], bad],
        completion_ids=[[1], [2]],
        reasoner_boxes=[[[100, 100, 199, 199]], [[100, 100, 199, 199]]],
        reasoner_points=[[[[120, 130], [180, 170]]], [[[120, 130], [180, 170]]]],
        trainer_state=object(),
        log_extra=lambda *a: None,
        log_metric=lambda *a: None,
    )
    assert out == [1.0, 0.0]
    assert all(type(v) is float for v in out)


def test_make_trl_rewards_names_and_pickling():
    fns = R.make_trl_rewards(R.SEGZERO_REWARDS)
    assert [f.__name__ for f in fns] == list(R.SEGZERO_REWARDS)
    again = pickle.loads(pickle.dumps(fns[1]))
    assert again.__name__ == "seg_format_strict"
    assert again(prompts=["p"], completions=[GOOD]) == [1.0]  # format rewards need no gt columns


def test_make_trl_rewards_builds_the_ablation_rewards_by_name():
    box = '<think>t</think><answer>{"bbox": [100, 100, 199, 199]}</answer>'
    points = '<think>t</think><answer>{"points_1": [120, 130], "points_2": [180, 170]}</answer>'
    columns = {
        "reasoner_boxes": [[[100, 100, 199, 199]]] * 2,
        "reasoner_points": [[[[120, 130], [180, 170]]]] * 2,
    }
    box_fns = R.make_trl_rewards(R.BOX_ONLY_REWARDS)
    assert [f(prompts=["p"] * 2, completions=[box, points], **columns) for f in box_fns] == [
        [1.0, 1.0],
        [1.0, 0.0],
        [1.0, 0.0],
        [1.0, 0.0],
    ]
    points_fns = R.make_trl_rewards(R.POINTS_ONLY_REWARDS)
    assert [f(prompts=["p"] * 2, completions=[box, points], **columns) for f in points_fns] == [
        [1.0, 1.0],
        [0.0, 1.0],
        [0.0, 1.0],
    ]
    # The format rewards need no gt columns; the box-free accuracy does.
    assert R.trl_reward("seg_format_points_only")(prompts=["p"], completions=[points]) == [1.0]
    with pytest.raises(ValueError, match="reasoner_boxes"):
        R.trl_reward("points_l1_no_box")(prompts=["p"], completions=[points])


def test_trl_errors_are_clear():
    with pytest.raises(ValueError, match="unknown reward 'iou'"):
        R.trl_reward("iou")
    with pytest.raises(ValueError, match="needs a segmenter"):
        R.trl_reward("mask_iou")
    with pytest.raises(ValueError, match="reasoner_boxes"):
        R.trl_reward("points_l1")(prompts=["p"], completions=[GOOD])
    with pytest.raises(ValueError, match="2 completions but 1"):
        R.trl_reward("bbox_l1")(prompts=["p", "p"], completions=[GOOD, GOOD], reasoner_boxes=[[[1, 2, 3, 4]]])


def test_import_does_not_pull_torch():
    code = "import sys, segzero.rewards; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- mask IoU bookkeeping


class FakeSegmenter:
    """Implements only ``segment_many``: each object's mask is its box, filled with exclusive ends (nothing
    for an object with points only)."""

    def __init__(self):
        self.calls = []

    def segment_many(self, images, prompts, mode="both"):
        self.calls.append((list(images), [list(p) for p in prompts], mode))
        outs = []
        for image, objs in zip(images, prompts):
            w, h = image.size
            mask = np.zeros((h, w), dtype=bool)
            for o in (o for o in objs if o.box is not None):
                x1, y1, x2, y2 = o.box
                mask[y1:y2, x1:x2] = True
            outs.append(type("Out", (), {"mask": mask, "score": 1.0})())
        return outs


def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


W, H = 100, 50


def image() -> Image.Image:
    return Image.new("RGB", (W, H), (10, 20, 30))


def target_left_top() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[:25, :50] = True  # 1250 px
    return m


def box_answer(box_840) -> str:
    return single(box_840, (1, 1), (2, 2))


def test_mask_iou_bookkeeping():
    seg = FakeSegmenter()
    fn = R.trl_reward("mask_iou", segmenter=seg, mode="box")
    assert fn.__name__ == "mask_iou"
    # (0, 0, 420, 420) in the 840 frame -> (0, 0, 50, 25) on a 100x50 image: exactly the target.
    exact = box_answer((0, 0, 420, 420))
    # (0, 0, 840, 420) -> (0, 0, 99, 25): the fake fills 99x25 = 2475 px, 1250 of them target.
    wide = box_answer((0, 0, 840, 420))
    target = rle(target_left_top())
    empty_target = rle(np.zeros((H, W), dtype=bool))
    out = fn(
        prompts=["p"] * 5,
        completions=[exact, [{"role": "assistant", "content": wide}], "I don't know", multi([]), multi([])],
        image=[image(), image(), image(), image(), image()],  # equal content, distinct objects (as TRL gives)
        mask_rle=[target, target, target, target, empty_target],
        trainer_state=None,
    )
    assert out == pytest.approx([1.0, 1250 / 2475, 0.0, 0.0, 1.0])
    # One segmenter call; the unreadable and empty answers reach it with nothing to segment.
    assert len(seg.calls) == 1
    images, prompts, mode = seg.calls[0]
    assert mode == "box"
    assert all(img is images[0] for img in images)  # same content -> one image, encoded once
    pixels = Frame.image((W, H))
    assert prompts == [
        [ObjectPrompt(box=(0, 0, 50, 25), points=((0, 0), (0, 0)), frame=pixels)],
        [ObjectPrompt(box=(0, 0, 99, 25), points=((0, 0), (0, 0)), frame=pixels)],
        [],
        [],
        [],
    ]


def test_mask_iou_excludes_ignore_pixels():
    seg = FakeSegmenter()
    reward = R.MaskIoUReward(seg)
    ignore = np.zeros((H, W), dtype=bool)
    ignore[:25, 50:] = True  # the part of "wide" outside the target
    wide = box_answer((0, 0, 840, 420))
    out = reward.score([wide], [image()], [rle(target_left_top())], [rle(ignore)])
    assert out == [1.0]
    assert reward(
        prompts=["p"], completions=[wide], images=[[image()]], mask_rle=[rle(target_left_top())]
    ) == [pytest.approx(1250 / 2475)]


def test_mask_iou_rows_without_a_mask_are_not_applicable():
    seg = FakeSegmenter()
    no_mask = {"size": None, "counts": None}  # how Arrow returns a null struct's fields
    out = R.MaskIoUReward(seg).score(
        [box_answer((0, 0, 420, 420))] * 3,
        [image()] * 3,
        [None, no_mask, rle(target_left_top())],
        [None, None, no_mask],
    )
    assert out == [None, None, 1.0]
    assert len(seg.calls[0][0]) == 1  # only the row with a mask was segmented


def test_mask_iou_errors():
    reward = R.MaskIoUReward(FakeSegmenter())
    with pytest.raises(ValueError, match="'image' and 'mask_rle'"):
        reward(prompts=["p"], completions=[GOOD])
    with pytest.raises(ValueError, match="the gt mask is 10x10 but the image is 100x50"):
        reward.score([GOOD], [image()], [rle(np.zeros((10, 10), dtype=bool))])


# --------------------------------------------------------------------------- hostile completions


def test_an_integer_beyond_the_float_range_scores_zero_in_every_reward():
    huge = in_answer('{"bbox":[1' + "0" * 400 + ',0,10,10], "points_1": [1, 1], "points_2": [2, 2]}')
    multi_huge = in_answer('[{"bbox_2d":[1' + "0" * 400 + ',0,10,10], "point_2d": [1, 1]}]')
    for text in (huge, multi_huge):
        for name, fn in R.REWARDS.items():
            value = fn(text, GT)
            low, high = R.REWARD_RANGES[name]
            assert low <= value <= high, name
            if name not in R.FORMAT_ONLY:
                assert value == 0.0, name


OLD_THINKING_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
TAG_PIECES = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "\u2003", "x", "<", "/", ">"]


@settings(max_examples=2000, deadline=None)
@given(
    st.booleans(), st.lists(st.sampled_from(TAG_PIECES), max_size=14).map("".join), st.booleans()
)
def test_thinking_format_gives_the_values_of_the_paper_pattern(opens, middle, closes):
    text = ("<think>" if opens else "") + middle + ("</answer>" if closes else "")
    assert R.thinking_format(text, GT) == (1.0 if OLD_THINKING_RE.fullmatch(text) else 0.0)


def test_thinking_format_is_linear_in_the_completion_length():
    # The pattern backtracks over every "</think>" x "</answer>" pair: 10 s at 8,000 repeats.
    for text, expected in (
        ("<think>" + "</think><answer></answer>x" * 40_000, 0.0),
        ("<think>" + "</think><answer></answer>x" * 40_000 + "</answer>", 1.0),
        ("<think>" + "</think>x<answer>" * 40_000 + "</answer>", 0.0),
        ("<think></think>" + " " * 1_000_000 + "<answer></answer>", 1.0),
        ("<think></think>" + " " * 1_000_000 + "x<answer></answer>", 0.0),
    ):
        started = time.perf_counter()
        assert R.thinking_format(text, GT) == expected
        R.multi_format(text, GT)
        assert time.perf_counter() - started < 0.5
