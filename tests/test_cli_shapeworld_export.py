"""`segzero shapeworld export`: ShapeWorld samples as datasets the other commands read."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from segzero.cli.app import app
from segzero.masks import decode_rle
from segzero.data.prepared import load_prepared, read_prepared
from segzero.data.reasonseg import read_reasonseg
from segzero.frames import scale
from segzero.shapeworld import make_split


def run(*args: str):
    return CliRunner().invoke(app, ["shapeworld", "export", *args])


def test_prepared_export_holds_both_families_with_masks_and_prompts_in_the_frame(tmp_path):
    result = run("--out", str(tmp_path / "d"), "-n", "3", "--family", "referring,reasoning", "--frame", "224")
    assert result.exit_code == 0, result.output
    data = load_prepared(tmp_path / "d")
    assert len(data) == 6
    expected = [*make_split("train", 3, "referring"), *make_split("train", 3, "reasoning")]
    for row, sample in zip(data, expected):
        assert (row["id"], row["request"], row["reasoner_frame"]) == (sample.id, sample.request, 224)
        mask = decode_rle(row["mask_rle"])
        assert np.array_equal(mask, sample.mask)
        ys, xs = np.nonzero(mask)
        # the box is the mask's tight box, scaled from the 112-pixel image into the 224 frame
        x1, y1, x2, y2 = row["reasoner_boxes"][0]
        assert (x1, y1) == (scale(xs.min(), 112, 224), scale(ys.min(), 112, 224))
        assert (x2, y2) == (scale(xs.max(), 112, 224), scale(ys.max(), 112, 224))


def test_prepared_export_writes_target_free_and_multi_target_requests(tmp_path):
    result = run("--out", str(tmp_path / "d"), "-n", "10", "--family", "referring,reasoning",
                 "--set", "no_target_share=0.4", "--set", "multi_target_share=0.4", "--answer-form", "multi")
    assert result.exit_code == 0, result.output
    expected = [*make_split("train", 10, "referring", no_target_share=0.4, multi_target_share=0.4),
                *make_split("train", 10, "reasoning", no_target_share=0.4, multi_target_share=0.4)]
    data = load_prepared(tmp_path / "d")
    assert len(data) == 20
    counts = set()
    for row, sample in zip(data, expected):
        assert (row["id"], row["request"]) == (sample.id, sample.request)
        extra, solution = json.loads(row["extra"]), json.loads(row["solution"])
        n = len(sample.extra["targets"])
        counts.add(min(n, 2))
        mask = decode_rle(row["mask_rle"])
        assert mask.shape == (112, 112) and np.array_equal(mask, sample.mask)
        assert len(row["reasoner_boxes"]) == len(row["reasoner_points"]) == len(solution) == n
        if n == 0:
            assert extra["no_target"] is True and solution == [] and not mask.any()
        else:
            assert [o["bbox_2d"] for o in solution] == row["reasoner_boxes"]
            shapes = [extra["shapes"][i]["box"] for i in sample.extra["targets"]]
            assert row["reasoner_boxes"] == [[scale(v, 112, 840) for v in box] for box in shapes]
    assert counts == {0, 1, 2}
    back = list(read_prepared(tmp_path / "d"))
    empty = [s for s in back if s.extra.get("no_target")]
    assert empty and all(s.boxes == [] and s.points == [] and not s.mask.any() for s in empty)


def test_reasonseg_export_reads_back_through_the_reasonseg_reader(tmp_path):
    result = run("--out", str(tmp_path / "rs"), "-n", "2", "--split", "test", "--family", "reasoning",
                 "--format", "reasonseg")
    assert result.exit_code == 0, result.output
    back = list(read_reasonseg(tmp_path / "rs", "test"))
    expected = list(make_split("test", 2, "reasoning"))
    assert [s.request for s in back] == [s.request for s in expected]
    for got, want in zip(back, expected):
        assert np.array_equal(got.mask == 1, want.mask == 1)


def test_bad_options_and_a_used_folder_are_refused_without_writing(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine too")
    for args in (
        ["--out", str(tmp_path / "used")],
        ["--out", str(tmp_path / "file")],
        ["--out", str(tmp_path / "x"), "--family", "blue"],
        ["--out", str(tmp_path / "x"), "--format", "coco"],
        ["--out", str(tmp_path / "x"), "--split", "holdout"],
        ["--out", str(tmp_path / "x"), "--set", "no_target_share=1.5"],
        ["--out", str(tmp_path / "x"), "--set", "no_target_shares=0.5"],
        ["--out", str(tmp_path / "x"), "--set", "multi_target_share=0.5", "--answer-form", "single"],
        ["--out", str(tmp_path / "x"), "--answer-form", "polygon"],
        ["--out", str(tmp_path / "x"), "--format", "reasonseg", "--set", "no_target_share=0.2"],
    ):
        result = run(*args, "-n", "2")
        assert result.exit_code != 0
        assert isinstance(result.exception, Exception) and "Traceback" not in result.output
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    assert (tmp_path / "file").read_text() == "mine too"
    assert not (tmp_path / "x").exists()
