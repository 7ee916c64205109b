"""The reference release's HF format: single (<box>/<points>) and multi (JSON list) solutions, eval masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segzero.data import SkipLog, read_reference_hf, sample_to_row
from segzero.data.reference_hf import parse_solution
from segzero.errors import DatasetError
from tests.test_data_fixtures import make_reference_hf, rect


@pytest.fixture(scope="module")
def ref_paths(tmp_path_factory):
    return make_reference_hf(tmp_path_factory.mktemp("refhf"))


def test_parse_solution_forms():
    assert parse_solution("<box>(1,2),(30,40)</box><points>(5,6),(7,8)</points>") == (
        "single",
        [[1, 2, 30, 40]],
        [[[5, 6], [7, 8]]],
    )
    assert parse_solution('[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}]') == (
        "multi",
        [[1, 2, 3, 4]],
        [[[2, 3]]],
    )
    assert parse_solution('{"bbox": [1,2,3,4], "points_1": [2,3], "points_2": [3,3]}')[0] == "single"
    with pytest.raises(ValueError):
        parse_solution("<box>nonsense</box>")


def test_single_form(ref_paths):
    report = SkipLog()
    samples = list(read_reference_hf(ref_paths[0], report=report))
    assert [s.id for s in samples] == ["0"]
    s = samples[0]
    assert (s.width, s.height, s.request) == (100, 50, "the box")
    assert s.boxes == [(10, 5, 29, 14)]  # 840 frame mapped back to the 100x50 image
    assert s.extra["reasoner_boxes"] == [[84, 84, 244, 235]]
    row = sample_to_row(s)
    assert row["reasoner_boxes"] == [[84, 84, 244, 235]]
    assert row["reasoner_points"] == [[[160, 151], [210, 200]]]
    assert json.loads(row["solution"]) == {
        "bbox": [84, 84, 244, 235],
        "points_1": [160, 151],
        "points_2": [210, 200],
    }
    assert dict(report.skipped).keys() == {"1", "2"}
    assert report.kinds == {"bad solution": 1, "no request": 1}


def test_multi_form(ref_paths):
    samples = list(read_reference_hf(ref_paths[1], report=SkipLog()))
    assert len(samples) == 2
    assert samples[0].extra["answer_form"] == "multi" and len(samples[0].boxes) == 2
    assert samples[0].boxes[1] == (50, 25, 99, 49)  # 840 clamps to the last pixel
    row = sample_to_row(samples[1])  # one object, still the list form
    assert json.loads(row["solution"]) == [{"bbox_2d": [0, 0, 84, 168], "point_2d": [42, 84]}]


def test_eval_form_with_mask(ref_paths):
    samples = list(read_reference_hf(ref_paths[2], report=SkipLog()))
    (s,) = samples
    assert s.id == "img7_3" and s.request == "eval request"
    assert np.array_equal(s.mask, rect((50, 100), 10, 5, 29, 14).astype(np.uint8))
    assert s.boxes == [(10, 5, 29, 14)] and s.points[0][0] == (19, 9)


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list(read_reference_hf(tmp_path / "nope", report=SkipLog()))
