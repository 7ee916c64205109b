"""The reference-exact reward twins: values worked out by hand from the reference's rules (SPEC 9.2),
including every case where ours differ, and linear time on hostile completions."""

from __future__ import annotations

import json
import time

import pytest

from segzero import rewards as R
from segzero import rewards_reference as RR
from segzero.rewards import GroundTruth

GT = GroundTruth(boxes=[(100, 100, 199, 199)], points=[((120, 130), (180, 170))])
GT_MULTI = GroundTruth(
    boxes=[(100, 100, 199, 199), (300, 300, 399, 399)], points=[((120, 130),), ((350, 350),)]
)
GOOD = '{"bbox": [100, 100, 199, 199], "points_1": [120, 130], "points_2": [180, 170]}'
ITEM_1 = '{"bbox_2d": [100, 100, 199, 199], "point_2d": [120, 130]}'
ITEM_2 = '{"bbox_2d": [300, 300, 399, 399], "point_2d": [350, 350]}'


def answer(ans: str, think: str = "t") -> str:
    return f"<think>{think}</think><answer>{ans}</answer>"


def single(box, p1, p2, **extra) -> str:
    return answer(json.dumps({"bbox": box, "points_1": p1, "points_2": p2, **extra}))


def both(name: str, completion: str, gt: GroundTruth = GT) -> tuple[float, float]:
    """(ours, the twin) for one reward name."""
    return R.REWARDS[name](completion, gt), R.REWARDS[name + "_reference"](completion, gt)


# --------------------------------------------------------------------------- thinking format


@pytest.mark.parametrize(
    "completion, value",
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think></think><answer></answer>", 1.0),
        ("<think>a</think> \n\t<answer>b</answer>", 1.0),
        ("<think>a</think>\u00a0<answer>b</answer>", 1.0),  # \s is Unicode whitespace
        ("<think>a</think>x</think><answer>b</answer>", 1.0),  # the lazy .*? runs past a </think>
        ("<think>a</think><answer>b</answer>c</answer>", 1.0),
        (" <think>a</think><answer>b</answer>", 0.0),  # full match: nothing before <think>
        ("<think>a</think><answer>b</answer>\n", 0.0),  # ... nor after </answer>
        ("<think>a</think>x<answer>b</answer>", 0.0),
        ("<think>a<answer>b</answer>", 0.0),
        ("<think></think><answer></answer", 0.0),
    ],
)
def test_thinking_format_full_match(completion, value):
    assert RR.thinking_format_reference(completion, GT) == value
    assert R.thinking_format(completion, GT) == value  # ours has the same rule


# --------------------------------------------------------------------------- strict and soft format


def test_strict_format_takes_the_first_braces_anywhere():
    assert both("seg_format_strict", answer(GOOD)) == (1.0, 1.0)
    # JSON in the reasoning is the reference's answer: no points there.
    assert both("seg_format_strict", answer(GOOD, think='maybe {"bbox": [0, 0, 9, 9]}')) == (1.0, 0.0)
    # "{}" is not a match ({[^}]+} needs a character inside), so the answer's object is read.
    assert both("seg_format_strict", answer(GOOD, think="{}")) == (1.0, 1.0)
    # Single quotes are not JSON for either.
    assert both("seg_format_strict", answer(GOOD.replace('"', "'"))) == (0.0, 0.0)
    # The span ends at the first "}", so a nested object is invalid JSON there.
    nested = '{"bbox": [100, 100, 199, 199], "points_1": [1, 2], "points_2": [3, 4], "m": {"a": 1}}'
    assert RR.seg_format_strict_reference(answer(nested), GT) == 0.0
    # Without answer tags the object still counts (it is searched anywhere).
    assert RR.seg_format_strict_reference(GOOD, GT) == 1.0


def test_strict_format_checks_keys_present_and_lengths_only():
    # Extra keys allowed (ours: exactly these keys).
    assert both("seg_format_strict", single([100, 100, 199, 199], [1, 2], [3, 4], label="cup")) == (0.0, 1.0)
    # Element types not checked (ours: finite numbers).
    weird = answer('{"bbox": ["a", null, true, NaN], "points_1": [[], {}], "points_2": [1, 2]}')
    assert RR.seg_format_strict_reference(weird, GT) == 0.0  # "{}" inside ends the span early
    weird = answer('{"bbox": ["a", null, true, NaN], "points_1": [[], "x"], "points_2": [1, 2]}')
    assert both("seg_format_strict", weird) == (0.0, 1.0)
    # Lengths: a point of 3, a box as a 4-character string.
    assert RR.seg_format_strict_reference(single([1, 2, 3, 4], [1, 2, 3], [1, 2]), GT) == 0.0
    assert RR.seg_format_strict_reference(single("abcd", [1, 2], [1, 2]), GT) == 0.0
    assert RR.seg_format_strict_reference(answer('{"bbox": [1, 2, 3, 4], "points_1": [1, 2]}'), GT) == 0.0


def test_soft_format_first_bbox_key_and_first_two_point_keys():
    loose = answer('{"BBox_main": [1, 2, 3, 4], "point_a": [1, 2], "Point_b": [3, 4]}')
    assert both("seg_format_soft", loose) == (1.0, 1.0)
    # Only lengths: strings count (ours: lists of numbers).
    assert both("seg_format_soft", single("abcd", "ab", [1, 2])) == (0.0, 1.0)
    # The FIRST bbox key decides (ours: any valid bbox key).
    two_boxes = answer('{"bbox": [1, 2, 3], "bbox_2": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4]}')
    assert both("seg_format_soft", two_boxes) == (1.0, 0.0)
    # The first TWO point keys decide (ours: any two valid point keys).
    three_points = answer(
        '{"bbox": [1, 2, 3, 4], "points_1": [1, 2], "points_2": [3, 4, 5], "points_3": [5, 6]}'
    )
    assert both("seg_format_soft", three_points) == (1.0, 0.0)
    # A number has no length; a key with both words counts as a point once the box is found.
    assert RR.seg_format_soft_reference(single(5, [1, 2], [3, 4]), GT) == 0.0
    assert (
        RR.seg_format_soft_reference(
            answer('{"bbox": [1, 2, 3, 4], "bbox_point": [1, 2], "p_point": [3, 4]}'), GT
        )
        == 1.0
    )


# --------------------------------------------------------------------------- box IoU and L1


def test_bbox_iou_threshold_and_strict_intersection():
    # gt 100x100 = 10000 px; a half box: IoU 5000/10000 = 0.5, not > 0.5; one more row: 5100/10000.
    assert RR.bbox_iou_reference(single([100, 100, 199, 149], [1, 2], [3, 4]), GT) == 0.0
    assert RR.bbox_iou_reference(single([100, 100, 199, 150], [1, 2], [3, 4]), GT) == 1.0
    # A one-pixel-wide column on itself: ix1 == ix2, so the reference counts no intersection (IoU 0);
    # ours counts its 31 pixels (IoU 1).
    thin = GroundTruth(boxes=[(50, 10, 50, 40)], points=[((50, 20), (50, 30))])
    assert both("bbox_iou", single([50, 10, 50, 40], [50, 20], [50, 30]), thin) == (1.0, 0.0)
    # Floats are used as they are: inter 99.6*100, union 99.6*100.6 + 10000 - 9960: IoU 0.99.
    assert RR.bbox_iou_reference(single([100.4, 100, 199, 199.6], [1, 2], [3, 4]), GT) == 1.0


def test_bbox_differences_from_ours():
    # Corners given in the wrong order: ours orders them; the reference's IoU is 0 and L1 99.
    flipped = single([199, 199, 100, 100], [120, 130], [180, 170])
    assert both("bbox_iou", flipped) == (1.0, 0.0) and both("bbox_l1", flipped) == (1.0, 0.0)
    # Single quotes: ours reads Python literals for geometry, the reference's json.loads fails.
    quoted = answer(GOOD.replace('"', "'"))
    assert both("bbox_iou", quoted) == (1.0, 0.0) and both("bbox_l1", quoted) == (1.0, 0.0)
    # A box in the reasoning is the reference's box.
    thought = answer(GOOD, think='first guess {"bbox": [0, 0, 10, 10]}')
    assert both("bbox_iou", thought) == (1.0, 0.0)
    # Booleans are 0/1 to Python's arithmetic: [true, true, 199, 199] is the box (1, 1, 199, 199).
    gt1 = GroundTruth(boxes=[(1, 1, 199, 199)], points=[((120, 130), (180, 170))])
    bools = answer('{"bbox": [true, true, 199, 199], "points_1": [120, 130], "points_2": [180, 170]}')
    assert both("bbox_iou", bools, gt1) == (0.0, 1.0) and both("bbox_l1", bools, gt1) == (0.0, 1.0)
    # Key "bbox" exactly, and a value of length 4.
    assert RR.bbox_iou_reference(answer('{"BBOX": [100, 100, 199, 199]}'), GT) == 0.0
    assert RR.bbox_iou_reference(answer('{"bbox": [100, 100, 199]}'), GT) == 0.0
    assert RR.bbox_iou_reference(answer('{"bbox": ["100", 100, 199, 199]}'), GT) == 0.0


def test_bbox_l1_mean_below_ten():
    assert RR.bbox_l1_reference(single([109, 109, 208, 208], [1, 2], [3, 4]), GT) == 1.0  # mean 9
    assert RR.bbox_l1_reference(single([110, 110, 209, 209], [1, 2], [3, 4]), GT) == 0.0  # mean 10
    assert RR.bbox_l1_reference(single([139.9, 100, 199, 199], [1, 2], [3, 4]), GT) == 1.0  # 39.9 / 4
    assert RR.bbox_l1_reference(answer('{"bbox": [1e400, 100, 199, 199]}'), GT) == 0.0  # inf


# --------------------------------------------------------------------------- points


def test_points_l1_distance_and_pairing():
    assert both("points_l1", answer(GOOD)) == (1.0, 1.0)
    swapped = single([100, 100, 199, 199], [180, 170], [120, 130])
    assert RR.points_l1_reference(swapped, GT) == 1.0  # the crossed pairing is the better one
    # In a frame-sized box: p2 off by 199 px -> (0 + 199) / 2 = 99.5 < 100; by 200 -> 100, not < 100.
    assert RR.points_l1_reference(single([0, 0, 839, 839], [120, 130], [180, 369]), GT) == 1.0
    assert RR.points_l1_reference(single([0, 0, 839, 839], [120, 130], [180, 370]), GT) == 0.0
    # Both points inside the predicted box, borders included.
    assert RR.points_l1_reference(single([120, 130, 180, 170], [120, 130], [180, 170]), GT) == 1.0
    assert RR.points_l1_reference(single([121, 130, 180, 170], [120, 130], [180, 170]), GT) == 0.0


def test_points_l1_int_casts_and_missing_box():
    # int() truncates: 199.5 -> 199 is inside [100, 199]; ours keeps 199.5, outside the box.
    edge = GroundTruth(boxes=[(100, 100, 199, 199)], points=[((199, 150), (180, 170))])
    assert both("points_l1", single([100, 100, 199, 199], [199.5, 150], [180, 170]), edge) == (0.0, 1.0)
    # int() reads strings: "12" is the point (1, 2) (its two characters).
    tiny = GroundTruth(boxes=[(0, 0, 10, 10)], points=[((1, 2), (3, 4))])
    assert both("points_l1", single([0, 0, 10, 10], "12", "34"), tiny) == (0.0, 1.0)
    assert RR.points_l1_reference(single([0, 0, 10, 10], [" 1 ", "2"], ["3", 4.9]), tiny) == 1.0
    assert RR.points_l1_reference(single([0, 0, 10, 10], ["1.5", 2], [3, 4]), tiny) == 0.0  # ValueError
    # Only the first two values of a point are read.
    assert both("points_l1", single([100, 100, 199, 199], [120, 130, 999], [180, 170])) == (0.0, 1.0)
    # No "bbox" key: the reference raises (0); a box of another length leaves it without a box (0).
    assert RR.points_l1_reference(answer('{"points_1": [120, 130], "points_2": [180, 170]}'), GT) == 0.0
    assert RR.points_l1_reference(single([100, 100, 199], [120, 130], [180, 170]), GT) == 0.0
    assert RR.points_l1_reference(single([100, 100, 199, 199], [120], [180, 170]), GT) == 0.0
    assert RR.points_l1_reference(single([100, 100, 199, 199], [120, 130], None), GT) == 0.0


# --------------------------------------------------------------------------- ground truth mapping


def test_ground_truth_as_the_reference_text_would_carry_it():
    # <box>(..)</box><points>(..),(..)</points> holds non-negative whole numbers and exactly two points.
    assert (
        RR.bbox_iou_reference(
            answer(GOOD), GroundTruth(boxes=[(100.0, 100, 199, 199)], points=[((1, 2), (3, 4))])
        )
        == 1.0
    )
    fractional = GroundTruth(boxes=[(100.5, 100, 199, 199)], points=[((120, 130), (180, 170))])
    assert RR.bbox_iou_reference(answer(GOOD), fractional) == 0.0
    assert R.bbox_iou(answer(GOOD), fractional) == 1.0
    one_point = GroundTruth(boxes=[(100, 100, 199, 199)], points=[((120, 130),)])
    assert RR.points_l1_reference(answer(GOOD), one_point) == 0.0
    for name in ("bbox_iou", "bbox_l1", "points_l1", "multi_accuracy"):
        assert R.REWARDS[name + "_reference"](answer(GOOD), GroundTruth()) == 0.0


# --------------------------------------------------------------------------- multi-object format


@pytest.mark.parametrize(
    "completion, value",
    [
        (answer(f"[{ITEM_1}]"), 3.0),
        (answer(f"\n [{ITEM_1}, {ITEM_2}] \n"), 3.0),
        (f"<answer>[{ITEM_1}]</answer>", 2.0),  # no thinking
        (answer('[{"bbox_2d": [1, 2, 3, 4]}, {"point_2d": [1, 2]}]'), 2.0),  # 1 + (1/2 + 1/2)
        (answer(f'["x", {ITEM_1}]'), 2.0),  # "bbox_2d" in "x" is False: the string scores 0
        (answer(f'["bbox_2d", {ITEM_1}]'), 1.0),  # "bbox_2d"["bbox_2d"] raises at once
        (answer(f"[{ITEM_1}, 5, {ITEM_1}]"), 1.0 + 2 / 3),  # 5 raises: the sum stops after item 1
        (answer(ITEM_1), 1.0),  # an object iterates over its keys: "bbox_2d"["bbox_2d"] raises
        (answer(f"Here: [{ITEM_1}]"), 1.0),  # not JSON as a whole
        (answer("[]"), 1.0),
        (answer(", ".join([ITEM_1] * 9).join("[]")), 1.0 + 2.0000000000000004),  # float sum of 9 x 2/9
    ],
)
def test_multi_format(completion, value):
    assert RR.multi_format_reference(completion, GT) == value


def test_multi_format_differences_from_ours():
    # Ours: a non-object item scores 0 and counts, and text around the JSON is skipped.
    assert both("multi_format", answer(f"[{ITEM_1}, 5, {ITEM_1}]")) == (1.0 + 4 / 3, 1.0 + 2 / 3)
    assert both("multi_format", answer(f"Here: [{ITEM_1}]")) == (3.0, 1.0)


# --------------------------------------------------------------------------- multi-object accuracy


def test_multi_accuracy_matching_and_hits():
    assert RR.multi_accuracy_reference(answer(f"[{ITEM_2}, {ITEM_1}]"), GT_MULTI) == 3.0
    assert RR.multi_accuracy_reference(answer(f"[{ITEM_1}]"), GT_MULTI) == 1.5  # 3 / max(1, 2)
    # A point outside its own box loses the point hit only; distance 29 hits, 30 does not.
    outside = '{"bbox_2d": [100, 100, 199, 199], "point_2d": [50, 50]}'
    assert RR.multi_accuracy_reference(answer(f"[{outside}]"), GT_MULTI) == 1.0  # 2 / 2
    near = '{"bbox_2d": [100, 100, 199, 199], "point_2d": [120, 159]}'
    far = '{"bbox_2d": [100, 100, 199, 199], "point_2d": [120, 160]}'
    assert RR.multi_accuracy_reference(answer(f"[{near}]"), GT_MULTI) == 1.5
    assert RR.multi_accuracy_reference(answer(f"[{far}]"), GT_MULTI) == 1.0
    # Here IoU is inclusive with max(0, .+1): a one-pixel column on itself is IoU 1 (unlike bbox_iou).
    thin = GroundTruth(boxes=[(50, 10, 50, 40)], points=[((50, 20),)])
    column = '[{"bbox_2d": [50, 10, 50, 40], "point_2d": [50, 20]}]'
    assert RR.multi_accuracy_reference(answer(column), thin) == 3.0


def test_multi_accuracy_differences_from_ours():
    # Nothing asked, nothing given: ours 3, the reference's empty arrays fail (0).
    assert both("multi_accuracy", answer("[]"), GroundTruth()) == (3.0, 0.0)
    # An item without point_2d voids the whole answer (ours scores the others).
    no_point = '{"bbox_2d": [300, 300, 399, 399]}'
    assert both("multi_accuracy", answer(f"[{ITEM_1}, {no_point}]"), GT_MULTI) == (2.5, 0.0)
    # At most 120 objects: 130 copies of object 1 score 3 / max(120, 2); ours divides by 130.
    crowd = answer(", ".join([ITEM_1] * 130).join("[]"))
    assert both("multi_accuracy", crowd, GT_MULTI) == (3 / 130, 3 / 120)
    # ... but every item is read: the 130th without point_2d still voids it.
    assert (
        RR.multi_accuracy_reference(answer(", ".join([ITEM_1] * 129 + [no_point]).join("[]")), GT_MULTI)
        == 0.0
    )
    # Single quotes, or no answer tags: the reference reads nothing.
    assert both("multi_accuracy", answer(f"[{ITEM_1}, {ITEM_2}]".replace('"', "'")), GT_MULTI) == (3.0, 0.0)
    assert both("multi_accuracy", f"<think>t</think>[{ITEM_1}, {ITEM_2}]", GT_MULTI) == (3.0, 0.0)


def test_multi_accuracy_numpy_value_types():
    # All-boolean boxes: numpy cannot subtract booleans (0); strings make a string array (0).
    bools = '{"bbox_2d": [true, true, true, true], "point_2d": [1, 1]}'
    assert RR.multi_accuracy_reference(answer(f"[{bools}]"), GT_MULTI) == 0.0
    text = '{"bbox_2d": ["100", 100, 199, 199], "point_2d": [120, 130]}'
    assert RR.multi_accuracy_reference(answer(f"[{text}]"), GT_MULTI) == 0.0
    # Ragged or nested boxes (0).
    ragged = '{"bbox_2d": [100, 100, 199], "point_2d": [120, 130]}'
    assert RR.multi_accuracy_reference(answer(f"[{ITEM_1}, {ragged}]"), GT_MULTI) == 0.0
    nested = '{"bbox_2d": [[100], [100], [199], [199]], "point_2d": [120, 130]}'
    assert RR.multi_accuracy_reference(answer(f"[{nested}]"), GT_MULTI) == 0.0
    # A 20-digit integer makes the boxes an object array of Python ints: item 1 still scores 3 (1.5).
    huge = '{"bbox_2d": [18446744073709551616, 0, 1, 1], "point_2d": [0, 0]}'
    assert RR.multi_accuracy_reference(answer(f"[{ITEM_1}, {huge}]"), GT_MULTI) == 1.5
    # In a point it reaches np.sqrt on Python ints, which has no loop for them: the answer scores 0.
    huge_point = '{"bbox_2d": [300, 300, 399, 399], "point_2d": [%s, 1]}' % ("1" + "0" * 400)
    assert RR.multi_accuracy_reference(answer(f"[{ITEM_1}, {huge_point}]"), GT_MULTI) == 0.0


# --------------------------------------------------------------------------- non-repeat


@pytest.mark.parametrize(
    "completion, ours, reference",
    [
        ("A. A. B. B.", 1.0, 0.0),  # two repeats in all (ours: no sentence three times)
        ("A. A. A.", 0.0, 0.0),
        ("A. A. B.", 1.0, 1.0),
        ("x . x. \n x", 0.0, 0.0),  # sentences are stripped
        ("a. A. a.", 1.0, 1.0),  # and compared exactly
        ("A... A", 1.0, 1.0),  # empty pieces are not sentences
    ],
)
def test_non_repeat_counts_all_repeats(completion, ours, reference):
    assert both("non_repeat", completion) == (ours, reference)


# --------------------------------------------------------------------------- hostile input, registry


HOSTILE = {
    "braces": "{" * 1_000_000,
    "think pairs": "<think>" + "</think><answer>" * 62_500 + "x",
    "answer tags": "<answer>" * 125_000,
    "whitespace": "<answer>" + " " * 1_000_000,
    "400 digits": answer(
        '{"bbox": [0, 0, %s, %s], "points_1": [%s, 2], "points_2": [3, 4]}' % (("1" + "0" * 400,) * 3)
    ),
    "5000 digits": answer('{"bbox": [%s, 1, 2, 3], "points_1": [1, 2], "points_2": [3, 4]}' % ("9" * 5000)),
    "deep": answer('{"bbox": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "many items": answer(", ".join([ITEM_1] * 20_000).join("[]")),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_twins_are_linear_and_never_raise(name):
    text = HOSTILE[name]
    start = time.perf_counter()
    values = {
        n: fn(text, GT_MULTI if n.startswith("multi") else GT) for n, fn in RR.REFERENCE_REWARDS.items()
    }
    assert time.perf_counter() - start < 5.0, name  # the reference's regexes take minutes on the first four
    assert all(isinstance(v, float) for v in values.values())
    assert values["bbox_iou_reference"] == values["bbox_l1_reference"] == values["points_l1_reference"] == 0.0


def test_registry_holds_every_twin():
    twins = {n for n in R.REWARDS if n.endswith(RR.SUFFIX)}
    assert twins == {
        name + "_reference"
        for name in (
            "thinking_format",
            "seg_format_strict",
            "seg_format_soft",
            "bbox_iou",
            "bbox_l1",
            "points_l1",
            "multi_format",
            "multi_accuracy",
            "non_repeat",
        )
    }
    assert all(n[: -len(RR.SUFFIX)] in R.REWARDS for n in twins)
    assert set(R.REWARD_RANGES) == set(R.REWARD_NAMES)
    assert R.REWARD_RANGES["multi_accuracy_reference"] == (0.0, 3.0)
    assert {n for n in twins if n[: -len(RR.SUFFIX)] in R.FORMAT_ONLY} <= R.FORMAT_ONLY
    assert set(RR.SEGZERO_REFERENCE_REWARDS) | set(RR.VISION_REASONER_REFERENCE_REWARDS) <= twins
    assert sum(R.REWARDS[n](answer(GOOD), GT) for n in RR.SEGZERO_REFERENCE_REWARDS) == 5.0


def test_twins_through_the_trl_adapter():
    reward = R.trl_reward("points_l1_reference")
    texts = [answer(GOOD), [{"role": "assistant", "content": single([0, 0, 10, 10], "12", "34")}], "{}"]
    boxes = [[[100, 100, 199, 199]], [[0, 0, 10, 10]], [[0, 0, 10, 10]]]
    points = [[[[120, 130], [180, 170]]], [[[1, 2], [3, 4]]], [[[1, 2], [3, 4]]]]
    assert reward(None, texts, reasoner_boxes=boxes, reasoner_points=points) == [1.0, 1.0, 0.0]
    assert R.trl_reward("non_repeat_reference")(None, ["A. A. B. B.", "A."]) == [0.0, 1.0]
