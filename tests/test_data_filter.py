"""Segmenter-agreement filter: counts add up, reasons name the IoU, ignore pixels are left out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from typer.testing import CliRunner

from segzero.data import SkipLog, iter_samples, load_prepared
from segzero.geometry import ground_truth_planes, mask_iou
from tests.test_data_fixtures import make_reasonseg, make_refer


@dataclass
class Out:
    mask: np.ndarray


class OracleSegmenter:
    """Answers with the box of the first object: the right mask for rectangles, wrong for anything else."""

    def __init__(self):
        self.calls = 0

    def segment_many(self, images, prompts, mode="both"):
        assert mode == "both"
        outs = []
        for image, objs in zip(images, prompts):
            self.calls += 1
            w, h = image.size
            mask = np.zeros((h, w), dtype=bool)
            for obj in objs:
                assert len(obj.points) == 1  # box + point 1
                x1, y1, x2, y2 = obj.box
                mask[y1 : y2 + 1, x1 : x2 + 1] = True
            outs.append(Out(mask))
        return outs


def test_mask_iou_leaves_ignore_out():
    gt = np.array([[1, 1, 255, 0]], dtype=np.uint8)
    assert mask_iou(np.array([[1, 1, 1, 0]], bool), *ground_truth_planes(gt)) == 1.0
    assert mask_iou(np.array([[1, 0, 0, 1]], bool), *ground_truth_planes(gt)) == 1 / 3
    assert mask_iou(np.zeros((1, 4), bool), *ground_truth_planes(np.zeros((1, 4), np.uint8))) == 1.0


def test_filter_keeps_what_the_segmenter_reproduces(tmp_path):
    report = SkipLog()
    segmenter = OracleSegmenter()
    samples = list(iter_samples("refcocog", make_refer(tmp_path), "val", report=report, segmenter=segmenter))
    # Rectangles (refs 1, 3, 5) are reproduced by their box; the L-shape (ref 2) is not.
    assert [s.id for s in samples] == ["1_10", "1_11", "3_13", "5_15"]
    assert all(s.extra["segmenter_iou"] == 1.0 for s in samples)
    assert report.kept == 4
    assert report.kinds["segmenter disagrees"] == 1
    reason = dict(report.skipped)["2_12"]
    assert "IoU" in reason and "< 0.6" in reason
    assert segmenter.calls == 4  # the two sentences of ref 1 are segmented once
    assert report.kept + report.n_skipped == 7


def test_filter_with_tiny_sam2(tiny_models, tmp_path):
    """A random SAM2 rejects most samples; every sample is either kept or reported."""
    from segzero.cli import app

    root = make_reasonseg(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "prepare",
            "reasonseg",
            "--root",
            str(root),
            "--out",
            str(out),
            "--filter-with-segmenter",
            str(tiny_models.segmenter),
        ],
    )
    assert result.exit_code == 0, result.output
    kept = load_prepared(out).num_rows
    lines = (out / "skipped.jsonl").read_text().splitlines()
    by_segmenter = sum('"segmenter agreement IoU' in line for line in lines)
    assert kept + by_segmenter == 2  # a and b were readable; c, d, e, f are skipped as before
    assert sum('"warning"' not in line for line in lines) == 4 + by_segmenter
