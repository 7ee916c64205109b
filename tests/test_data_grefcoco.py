"""gRefCOCO as released (grefs(unc).json or .p, instances.json, COCO images): samples, reports, prepared rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from segzero.cli.app import app
from segzero.data import NO_TARGET_KEY, SkipLog, iter_samples, read_prepared, sample_to_row, save_prepared
from segzero.data.grefcoco import read_grefcoco
from segzero.errors import DatasetError
from tests.test_data_filter import OracleSegmenter
from tests.test_data_fixtures import GREF_SIZES, grefcoco_target, make_grefcoco

runner = CliRunner()


@pytest.mark.parametrize("refs_format", ["json", "pickle"])
def test_one_sample_per_sentence_with_zero_one_or_many_targets(tmp_path, refs_format):
    report = SkipLog()
    samples = {
        s.id: s for s in iter_samples("grefcoco", make_grefcoco(tmp_path, refs_format), "val", report=report)
    }
    assert list(samples) == ["1_10", "1_11", "2_20", "3_30", "4_40", "8_80"]
    assert report.kept == 6 and samples["1_11"].request == "top left thing"

    single, multi, crowd = samples["1_10"], samples["2_20"], samples["4_40"]
    np.testing.assert_array_equal(single.mask, grefcoco_target(101))
    assert single.boxes == [(4, 3, 13, 12)] and len(single.points) == 1 and len(single.points[0]) == 2
    np.testing.assert_array_equal(multi.mask, grefcoco_target(101, 102))  # the union
    assert multi.boxes == [(4, 3, 13, 12), (20, 10, 35, 25)] and len(multi.points) == 2
    for (x1, y1, x2, y2), points in zip(multi.boxes, multi.points):
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in points)  # each object's points inside it
    np.testing.assert_array_equal(crowd.mask, grefcoco_target(102))  # the crowd annotation left out
    assert crowd.boxes == [(20, 10, 35, 25)]

    # The contract for a request that matches nothing.
    empty = samples["3_30"]
    assert empty.boxes == [] and empty.points == [] and empty.extra[NO_TARGET_KEY] is True
    assert empty.mask.shape == (30, 40) and empty.mask.dtype == np.uint8 and not empty.mask.any()
    assert [s.extra[NO_TARGET_KEY] for s in samples.values()] == [False, False, False, True, False, False]
    assert samples["8_80"].extra["ann_ids"] == [201] and samples["8_80"].mask.shape == GREF_SIZES[2][::-1]
    assert single.source == "grefcoco" and single.extra["split"] == "val" and single.extra["sent_id"] == 10

    skipped = dict(report.skipped)
    assert skipped == {
        "5_50": "no_target is False but ann_id is [-1]",
        "6_60": "annotation 999 is not in instances.json",
        "7_70": skipped["7_70"],
        "9": "ref 9 lacks sentences",
    }
    assert "COCO_train2014_000000000003.jpg is missing" in skipped["7_70"]
    assert report.kinds["missing image"] == 1 and report.kinds["contradictory no_target"] == 1
    assert dict(report.warnings) == {
        "4_40": "crowd annotation 103 left out of the ground truth",
        "8_80": "unknown field(s) foo not read",
    }


def test_other_splits_and_the_layout_variants(tmp_path):
    root = make_grefcoco(tmp_path / "rela")
    assert [s.id for s in read_grefcoco(root, "testA", report=SkipLog())] == ["11_110", "12_120"]
    assert [s.id for s in read_grefcoco(root / "grefcoco", "testB", report=SkipLog())] == ["13_130"]
    with pytest.raises(DatasetError, match="has no split 'test'; its splits are testA, testB, train, val"):
        list(read_grefcoco(root, "test"))
    with pytest.raises(DatasetError, match=r"No grefs\(unc\).json .* found"):
        list(read_grefcoco(tmp_path, "val"))
    moved = tmp_path / "coco"
    (root / "images").rename(moved)
    with pytest.raises(DatasetError, match="No COCO images folder"):
        list(read_grefcoco(root, "val"))
    assert len(list(read_grefcoco(root, "val", images=moved / "train2014", report=SkipLog()))) == 6


def test_bad_records_are_reported_one_by_one(tmp_path):
    root = make_grefcoco(tmp_path)
    refs_file = root / "grefcoco" / "grefs(unc).json"
    refs = json.loads(refs_file.read_text())
    refs[0]["ann_id"] = [101, -1]
    refs[1]["ann_id"] = ["a"]
    refs[1]["sentences"][0]["exists"] = True
    refs[2]["image_id"] = 77
    refs.append("not a ref")
    refs_file.write_text(json.dumps(refs))
    report = SkipLog()
    assert [s.id for s in read_grefcoco(root, "val", report=report)] == ["4_40", "8_80"]
    skipped = dict(report.skipped)
    assert skipped["1_10"] == skipped["1_11"] == "ann_id [101, -1] mixes -1 (no target) with annotations"
    assert skipped["2_20"] == "ann_id ['a'] is not a list of annotation ids"
    assert skipped["3_30"] == "image 77 is not in instances.json"
    assert skipped["ref #13"] == "ref #13 of grefs(unc).json is not a record"
    assert report.n_skipped == 9  # 4 sentences above, the 4 of the fixture, the stray record


def test_prepared_rows_keep_the_no_target_contract(tmp_path):
    samples = list(read_grefcoco(make_grefcoco(tmp_path / "g"), "val", report=SkipLog()))
    by_id = {s.id: s for s in samples}
    row = sample_to_row(by_id["3_30"])
    assert row["reasoner_boxes"] == [] and row["reasoner_points"] == [] and row["solution"] == "[]"
    assert json.loads(row["solution"]) == [] and json.loads(row["extra"])[NO_TARGET_KEY] is True
    assert json.loads(sample_to_row(by_id["2_20"])["solution"])[1]["bbox_2d"] == [420, 280, 735, 700]

    assert save_prepared(samples, tmp_path / "prepared") == 6
    back = {s.id: s for s in read_prepared(tmp_path / "prepared")}
    empty = back["3_30"]
    assert empty.boxes == [] and empty.points == [] and empty.extra[NO_TARGET_KEY] is True
    assert empty.mask.shape == (30, 40) and not empty.mask.any()
    assert back["2_20"].boxes == by_id["2_20"].boxes and back["2_20"].extra[NO_TARGET_KEY] is False
    np.testing.assert_array_equal(back["2_20"].mask, by_id["2_20"].mask)

    flagged_wrongly = by_id["1_10"]
    flagged_wrongly.extra[NO_TARGET_KEY] = True
    with pytest.raises(DatasetError, match="1_10 is marked no_target but has"):
        sample_to_row(flagged_wrongly)


def test_the_segmenter_filter_keeps_no_target_samples_without_asking(tmp_path):
    segmenter = OracleSegmenter()
    report = SkipLog()
    kept = list(iter_samples("grefcoco", make_grefcoco(tmp_path), "val", report=report, segmenter=segmenter))
    # Rectangles are reproduced by their boxes; the no-target request has nothing to reproduce.
    assert [s.id for s in kept] == ["1_10", "1_11", "2_20", "3_30", "4_40", "8_80"]
    assert segmenter.calls == 4  # 1 (both sentences once), 2, 4, 8; never for 3
    assert "segmenter_iou" not in kept[3].extra


def test_prepare_grefcoco_command(tmp_path):
    root = make_grefcoco(tmp_path / "rela", "pickle")
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["prepare", "grefcoco", "--root", str(root), "--split", "val", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "kept 6" in res.output and "skipped 4" in res.output and "warnings 2" in res.output
    assert "skipped 6_60: annotation 999 is not in instances.json" in res.output
    lines = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {line["id"] for line in lines if not line.get("warning")} == {"5_50", "6_60", "7_70", "9"}
    rows = {s.id: s for s in read_prepared(out)}
    assert rows["3_30"].extra[NO_TARGET_KEY] is True and rows["3_30"].boxes == []

    refused = runner.invoke(app, ["prepare", "grefcoco", "--root", str(root), "--out", str(tmp_path / "o2"),
                                  "--protocol", "reference"])  # fmt: skip
    assert "has no gRefCOCO" in str(refused.exception) and not (tmp_path / "o2").exists()
