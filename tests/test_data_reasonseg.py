"""ReasonSeg reader: fill order, ignore regions, flag shapes, bad polygons, missing files, subsets, texts."""

from __future__ import annotations

import numpy as np
import pytest

from segzero.data import SkipLog, read_reasonseg
from tests.test_data_fixtures import make_reasonseg, reasonseg_expected_a


@pytest.fixture()
def rs_root(tmp_path):
    return make_reasonseg(tmp_path)


def test_mask_fill_order_and_ignore(rs_root):
    report = SkipLog()
    samples = {s.id: s for s in read_reasonseg(rs_root, "val", report=report)}
    assert list(samples) == ["a", "b"]
    a = samples["a"]
    assert a.mask.dtype == np.uint8 and a.mask.shape == (40, 60)
    assert np.array_equal(a.mask, reasonseg_expected_a())
    assert a.request == "the thing to sit on"  # val uses text[0]
    assert a.is_sentence is False and samples["b"].is_sentence is True
    assert a.boxes == [(5, 5, 50, 30)]
    # Prompts never land on ignore pixels.
    for x, y in a.points[0]:
        assert a.mask[y, x] == 1


def test_skips_and_warnings(rs_root):
    report = SkipLog()
    list(read_reasonseg(rs_root, "val", report=report))
    reasons = dict(report.skipped)
    assert set(reasons) == {"c", "d", "e", "f"}
    assert "missing" in reasons["c"]
    assert "not a readable ReasonSeg JSON" in reasons["d"]
    assert "no target pixel" in reasons["e"] and "fewer than 3" in reasons["e"]
    assert "no annotation file" in reasons["f"]
    assert report.kinds == {"missing image": 1, "unreadable json": 1, "empty mask": 1, "missing json": 1}
    assert [w[0] for w in report.warnings] == ["b"]


def test_subsets(rs_root):
    assert [s.id for s in read_reasonseg(rs_root, "val", subset="short", report=SkipLog())] == ["a"]
    assert [s.id for s in read_reasonseg(rs_root, "val", subset="long", report=SkipLog())] == ["b"]


def test_texts_per_split(rs_root):
    train = list(read_reasonseg(rs_root, "train", report=SkipLog()))
    assert [(s.id, s.request) for s in train] == [("g_0", "first text"), ("g_1", "second text")]
    assert train[0].boxes == [(20, 10, 39, 19)]
    first = list(read_reasonseg(rs_root, "train", all_texts=False, report=SkipLog()))
    assert [s.id for s in first] == ["g"]
    val_all = [s.id for s in read_reasonseg(rs_root, "val", all_texts=True, report=SkipLog())]
    assert val_all == ["a_0", "a_1", "b_0"]
