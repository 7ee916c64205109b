"""RefCOCO-family reader on a hand-made refer folder: masks from polygons, RLE and crowd RLE; skips."""

from __future__ import annotations

import numpy as np
import pytest

from segzero.data import SkipLog, read_refer
from segzero.errors import DatasetError
from tests.test_data_fixtures import CROWD, L_SHAPE, REFER_SHAPE, make_refer, rect


@pytest.fixture()
def refer_root(tmp_path):
    return make_refer(tmp_path)


def test_one_sample_per_sentence_with_exact_masks(refer_root):
    report = SkipLog()
    samples = {s.id: s for s in read_refer(refer_root, "refcocog", "val", report=report)}
    assert list(samples) == ["1_10", "1_11", "2_12", "3_13", "5_15"]
    s = samples["1_10"]
    assert s.request == "the box on the left" and samples["1_11"].request == "left rectangle"
    assert (s.width, s.height, s.source) == (40, 30, "refcocog")
    assert s.image.name == "COCO_train2014_000000000001.jpg"
    # The polygon (5,5)-(25,15) covers pixel columns 5..24 and rows 5..14.
    assert np.array_equal(s.mask, rect(REFER_SHAPE, 5, 5, 24, 14).astype(np.uint8))
    assert s.boxes == [(5, 5, 24, 14)]
    assert s.points[0][0] == (14, 9)
    assert s.extra["ann_id"] == 101 and s.extra["split"] == "val" and s.extra["sent_id"] == 10
    assert np.array_equal(samples["2_12"].mask, L_SHAPE.astype(np.uint8))  # compressed RLE
    assert np.array_equal(samples["3_13"].mask, CROWD.astype(np.uint8))  # crowd, uncompressed RLE
    assert samples["3_13"].extra["iscrowd"] == 1
    assert np.array_equal(samples["5_15"].mask, rect(REFER_SHAPE, 5, 20, 14, 27).astype(np.uint8))


def test_skips_are_reported_with_ids(refer_root):
    report = SkipLog()
    list(read_refer(refer_root, "refcocog", "val", report=report))
    skipped = dict(report.skipped)
    assert set(skipped) == {"4_14", "6_16"}
    assert "no polygon with 3 or more points" in skipped["4_14"]
    assert "missing" in skipped["6_16"]
    assert report.kinds == {"empty mask": 1, "missing image": 1}
    assert [w[0] for w in report.warnings] == ["5_15"]


def test_split_and_errors(refer_root, tmp_path):
    train = list(read_refer(refer_root, "refcocog", "train", report=SkipLog()))
    assert [s.id for s in train] == ["7_17"]
    with pytest.raises(DatasetError, match="no split 'testA'"):
        list(read_refer(refer_root, "refcocog", "testA", report=SkipLog()))
    with pytest.raises(DatasetError, match=r"refs\(google\)\.p"):
        list(read_refer(refer_root, "refcocog", "val", split_by="google", report=SkipLog()))
    # The parent folder works too (the refer toolkit's data/ layout).
    assert len(list(read_refer(refer_root.parent, "refcocog", "val", report=SkipLog()))) == 5
