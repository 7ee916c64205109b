"""Property tests: whatever a model writes, the parser and every registered reward answer in bounded time.

Every reward in :data:`segzero.rewards.REWARDS` is checked (so rewards registered later, such as
reference twins, are covered by the same promise), plus ``mask_iou`` with a stand-in segmenter
that fills each box. For any completion: the parser returns a parse status with coordinates in the
frame, each reward a finite float in its :data:`REWARD_RANGES` range, nothing raises, and each call
takes less than ``BASE_S + PER_CHAR_S * len(completion)``: linear in the completion's length (the
constant covers the parser's bounded scan of at most 20,000 characters).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero import rewards as R
from segzero.answer import ParsedAnswer, ParseStatus, parse_answer
from segzero.defaults import REASONER_FRAME
from segzero.rewards import GroundTruth
from tests.test_rewards import FakeSegmenter, rle

BASE_S = 2.0  # covers the parser's bounded scan (at most 20,000 characters), with room for a busy machine
PER_CHAR_S = 2e-6  # 2 s per megabyte: a quadratic check takes minutes on a megabyte

GROUND_TRUTHS = (
    GroundTruth(boxes=[(100, 100, 199, 199)], points=[((120, 130), (180, 170))]),
    GroundTruth(boxes=[(10, 100, 200, 210), (225, 296, 706, 786)], points=[((30, 110),), ((302, 410),)]),
    GroundTruth(boxes=[(0, 0, 840, 840)]),
    GroundTruth(),
)
coordinate = st.floats(0, REASONER_FRAME)
ground_truths = st.one_of(
    st.sampled_from(GROUND_TRUTHS),
    st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=1, max_size=4).flatmap(
        lambda boxes: st.builds(
            GroundTruth,
            st.just(boxes),
            st.lists(
                st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=2).map(tuple),
                min_size=len(boxes),
                max_size=len(boxes),
            ).map(tuple),
        )
    ),
)

IMAGE = Image.new("RGB", (64, 48))
TARGET = np.zeros((48, 64), dtype=bool)
TARGET[10:30, 5:40] = True
MASK_IOU = R.MaskIoUReward(FakeSegmenter())


@pytest.fixture(scope="module", autouse=True)
def imported():
    """Call everything once first: the matching rewards import scipy on first use, which is not their time."""
    good = '<think>t</think><answer>{"bbox": [1, 2, 30, 40], "points_1": [5, 6], "points_2": [7, 8]}</answer>'
    for fn in R.REWARDS.values():
        fn(good, GROUND_TRUTHS[0])
    MASK_IOU.score([good], [IMAGE], [rle(TARGET)])


def within(seconds: float, text: str, what: str) -> None:
    limit = BASE_S + PER_CHAR_S * len(text)
    assert seconds < limit, f"{what} took {seconds:.2f} s on {len(text):,} characters (limit {limit:.2f} s)"


def check(text: str, gt: GroundTruth) -> None:
    """Every promise, for one completion."""
    started = time.perf_counter()
    parsed = parse_answer(text)
    within(time.perf_counter() - started, text, "parse_answer")
    assert isinstance(parsed, ParsedAnswer) and isinstance(parsed.status, ParseStatus)
    assert parsed.ok == bool(parsed.status in (ParseStatus.OK, ParseStatus.PARTIAL))
    for obj in parsed.objects:
        for v in (*(obj.box or ()), *(c for p in obj.points for c in p)):
            assert math.isfinite(v) and 0 <= v <= REASONER_FRAME
    for name, fn in R.REWARDS.items():
        low, high = R.REWARD_RANGES[name]
        started = time.perf_counter()
        value = fn(text, gt)
        within(time.perf_counter() - started, text, name)
        assert isinstance(value, float) and math.isfinite(value) and low <= value <= high, (name, value)
    started = time.perf_counter()
    (value,) = MASK_IOU.score([text], [IMAGE], [rle(TARGET)])
    within(time.perf_counter() - started, text, "mask_iou")
    low, high = R.REWARD_RANGES["mask_iou"]
    assert isinstance(value, float) and math.isfinite(value) and low <= value <= high, ("mask_iou", value)


def wrapped(answer: str, think: str = "t") -> st.SearchStrategy[str]:
    """``answer`` as a completion: tagged, untagged, or unclosed."""
    return st.sampled_from(
        (
            f"<think>{think}</think><answer>{answer}</answer>",
            f"<answer>{answer}</answer>",
            answer,
            f"<think>{think}</think>\n<answer>{answer}",
        )
    )


SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example]
)

# -- any string ----------------------------------------------------------------------------------


@SETTINGS
@given(st.text(st.characters(exclude_categories=())), ground_truths)  # lone surrogates included
def test_any_string(text, gt):
    check(text, gt)


PIECES = st.sampled_from(
    [
        "<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", "(", ")", '"', "'", "\\", ":",
        ",", " ", "\n", ".", '"bbox"', "'bbox'", '"bbox_2d"', '"points_1"', '"points_2"', '"point_2d"', "NaN",
        "Infinity", "-Infinity", "1e999", "12", "840", "-3.5", "true", "null", "None", "0x1f",
        "1" + "0" * 400,
    ]
)  # fmt: skip


@SETTINGS
@given(st.lists(PIECES, max_size=120).map("".join), ground_truths)
def test_answer_shaped_token_soup(text, gt):
    check(text, gt)


# -- any JSON shape, huge numbers, NaN and Infinity ----------------------------------------------

numbers = st.one_of(
    st.integers(-1000, 2000),
    st.integers(),
    st.integers(10**300, 10**1200) | st.integers(-(10**1200), -(10**300)),  # beyond the float range
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.sampled_from(["bbox", "points_1", "points_2", "bbox_2d", "point_2d", "BBox", "point"])
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@SETTINGS
@given(json_values, st.booleans(), ground_truths, st.data())
def test_any_json_shape(value, python_literal, gt, data):
    answer = repr(value) if python_literal else json.dumps(value)  # NaN, Infinity and big ints as written
    check(data.draw(wrapped(answer)), gt)


@SETTINGS
@given(
    st.sampled_from(["bbox", "points_1", "bbox_2d", "point_2d"]),
    st.integers(0, 3),
    st.integers(300, 30_000),
    st.sampled_from(["1", "-9", "0x", "0.", "1e"]),
    ground_truths,
    st.data(),
)
def test_huge_numbers_where_coordinates_go(key, at, digits, head, gt, data):
    """A model stuck repeating a digit: ``[1000...000, 0, 10, 10]``, in every number position and form."""
    values = ["0", "0", "10", "10"]
    values[at] = head + ("f" if head == "0x" else "0") * digits
    answer = f'{{"{key}": [{", ".join(values)}], "points_1": [1, 2], "points_2": [3, 4]}}'
    check(data.draw(wrapped(answer)), gt)
    check(data.draw(wrapped(f"[{answer}, {answer}]")), gt)


# -- deep nesting, repetition, megabytes ---------------------------------------------------------


@settings(SETTINGS, max_examples=30)
@given(
    st.integers(1, 100_000),
    st.sampled_from(
        [("[", "]"), ("{", "}"), ('{"bbox": ', "}"), ("[{", "}]"), ("(", ")"), ("-", ""), ("'", "'")]
    ),
    st.booleans(),
    ground_truths,
    st.data(),
)
def test_deep_nesting(depth, brackets, closed, gt, data):
    opener, closer = brackets
    answer = opener * depth + "1" + (closer * depth if closed else "")
    check(data.draw(wrapped(answer)), gt)


@settings(SETTINGS, max_examples=8)
@given(
    st.sampled_from(
        [
            "</think><answer></answer>x",
            "<think>",
            "The cup is on the left. ",
            '{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}, ',
            "0",
            "[{",
            "\\",
            "'\"",
        ]
    ),
    st.sampled_from([100_000, 1_000_000]),
    st.sampled_from(["<think>", "<answer>[", "<think>t</think><answer>{'bbox': [1", ""]),
    st.sampled_from(["</answer>", "", "]}</answer>"]),
    ground_truths,
)
def test_megabyte_completions(piece, size, head, tail, gt):
    check(head + piece * (size // len(piece)) + tail, gt)
