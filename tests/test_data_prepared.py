"""Prepared dataset: Sample -> row -> Sample round trip, RLE with ignore, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segzero.data import (
    Sample,
    SkipLog,
    load_prepared,
    read_prepared,
    read_reasonseg,
    row_to_sample,
    sample_to_row,
    save_prepared,
)
from segzero.data.prepared import build_solution
from segzero.masks import decode_rle, encode_rle
from segzero.errors import DatasetError
from tests.test_data_fixtures import make_reasonseg, reasonseg_expected_a, rect


@pytest.fixture()
def rs_samples(tmp_path):
    return list(read_reasonseg(make_reasonseg(tmp_path), "val", report=SkipLog()))


def test_rle_round_trip():
    plane = rect((7, 9), 1, 2, 5, 6)
    rle = encode_rle(plane)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    assert np.array_equal(decode_rle(rle), plane)


def test_row_columns_and_values(rs_samples):
    a = rs_samples[0]
    row = sample_to_row(a)
    assert row["id"] == "a" and row["source"] == "reasonseg" and row["is_sentence"] is False
    assert (row["width"], row["height"], row["reasoner_frame"]) == (60, 40, 840)
    # box (5,5,50,30) in a 60x40 image: x * 14, y * 21.
    assert row["reasoner_boxes"] == [[70, 105, 700, 630]]
    assert len(row["reasoner_points"][0]) == 2
    solution = json.loads(row["solution"])
    assert solution["bbox"] == [70, 105, 700, 630] and solution["points_1"] == row["reasoner_points"][0][0]
    assert np.array_equal(decode_rle(row["mask_rle"]), reasonseg_expected_a() == 1)
    assert np.array_equal(decode_rle(row["ignore_rle"]), reasonseg_expected_a() == 255)
    assert row["image"]["bytes"] == a.image.read_bytes()
    assert sample_to_row(rs_samples[1])["ignore_rle"] is None


def test_round_trip_sample_row_sample(rs_samples):
    for sample in rs_samples:
        row = sample_to_row(sample)
        back = row_to_sample(row)
        assert np.array_equal(back.mask, sample.mask)
        assert (back.id, back.request, back.width, back.height) == (
            sample.id,
            sample.request,
            sample.width,
            sample.height,
        )
        assert back.is_sentence == sample.is_sentence and back.source == sample.source
        assert back.extra["split"] == "val"
        assert isinstance(back.image, Image.Image) and back.image.size == (60, 40)
        assert sample_to_row(back) == row  # exact: prompts, RLEs, image bytes, solution, extra


def test_save_load_and_read_back(rs_samples, tmp_path):
    out = tmp_path / "prepared"
    assert save_prepared(rs_samples, out) == 2
    data = load_prepared(out)
    assert data.num_rows == 2 and data[0]["id"] == "a"
    assert isinstance(data[0]["image"], Image.Image)
    back = list(read_prepared(out, report=SkipLog()))
    assert np.array_equal(back[0].mask, reasonseg_expected_a())
    assert back[0].boxes == rs_samples[0].boxes
    assert [sample_to_row(s) for s in back] == [sample_to_row(s) for s in rs_samples]


def test_save_reports_unconvertible_and_empty(tmp_path):
    bad = Sample(
        id="x",
        image=tmp_path / "missing.jpg",
        request="r",
        width=4,
        height=4,
        mask=np.zeros((4, 4), np.uint8),
        boxes=[(0, 0, 1, 1)],
        points=[((0, 0), (1, 1))],
    )
    report = SkipLog()
    assert save_prepared([bad], tmp_path / "empty", report=report) == 0
    assert report.skipped[0][0] == "x" and "not found" in report.skipped[0][1]
    assert load_prepared(tmp_path / "empty").num_rows == 0


def test_multi_and_errors(tmp_path):
    img = Image.new("RGB", (10, 10))
    s = Sample(
        id="m",
        image=img,
        request="two",
        width=10,
        height=10,
        boxes=[(0, 0, 4, 4), (5, 5, 9, 9)],
        points=[((2, 2),), ((7, 7),)],
    )
    row = sample_to_row(s)
    assert json.loads(row["solution"]) == [
        {"bbox_2d": [0, 0, 336, 336], "point_2d": [168, 168]},
        {"bbox_2d": [420, 420, 756, 756], "point_2d": [588, 588]},
    ]
    assert row["mask_rle"] is None and row_to_sample(row).mask is None
    with pytest.raises(DatasetError):
        sample_to_row(s, answer_form="single")
    s.mask = np.zeros((3, 3), np.uint8)
    with pytest.raises(DatasetError, match="mask"):
        sample_to_row(s)
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        load_prepared(tmp_path / "nothing")
    assert build_solution([[1, 2, 3, 4]], [[[2, 3]]], "single") == (
        '{"bbox": [1, 2, 3, 4], "points_1": [2, 3], "points_2": [2, 3]}'
    )


def test_a_sample_where_nothing_matches(tmp_path):
    nothing = Sample(
        id="n", image=Image.new("RGB", (10, 8)), request="the dog", width=10, height=8,
        mask=np.zeros((8, 10), np.uint8), extra={"no_target": True},
    )  # fmt: skip
    row = sample_to_row(nothing)
    assert (row["reasoner_boxes"], row["reasoner_points"], row["solution"]) == ([], [], "[]")
    assert json.loads(row["extra"]) == {"no_target": True, "answer_form": "generalized"}
    assert not decode_rle(row["mask_rle"]).any() and decode_rle(row["mask_rle"]).shape == (8, 10)
    assert sample_to_row(row_to_sample(row)) == row  # round trip
    assert save_prepared([nothing], tmp_path / "data") == 1
    (back,) = read_prepared(tmp_path / "data")
    assert back.extra["no_target"] and back.boxes == [] and not back.mask.any()
    with pytest.raises(DatasetError, match="single-object answer needs one object"):
        sample_to_row(nothing, answer_form="single")
    nothing.mask[2, 3] = 1
    with pytest.raises(DatasetError, match="marked no_target but has 0 boxes and 1 target pixels"):
        sample_to_row(nothing)
    assert build_solution([], [], "generalized") == "[]"
    assert build_solution([[1, 2, 3, 4]], [[[2, 3], [3, 3]]], "generalized") == (
        '[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]'
    )


def test_edited_prompts_are_not_overridden_by_stale_exact_values(rs_samples):
    back = row_to_sample(sample_to_row(rs_samples[0]))
    back.boxes = [(0, 0, 59, 39)]
    back.points = [((30, 20), (10, 10))]
    row = sample_to_row(back)
    assert row["reasoner_boxes"] == [[0, 0, 826, 819]]  # int(59*14+.5), int(39*21+.5)
    assert row["reasoner_points"] == [[[420, 420], [140, 210]]]


def test_mask_without_points_gets_prompts_from_the_mask():
    mask = rect((50, 100), 10, 5, 29, 14).astype(np.uint8)
    s = Sample(
        id="sw",
        image=Image.new("RGB", (100, 50)),
        request="r",
        width=100,
        height=50,
        mask=mask,
        boxes=[(10, 5, 29, 14)],
        points=[],
        source="shapeworld",
    )
    row = sample_to_row(s)
    assert row["reasoner_boxes"] == [[84, 84, 244, 235]] and row["reasoner_points"][0][0] == [160, 151]
    assert s.points == []  # the caller's sample is left as it was
