"""ShapeWorld's ReasonSeg-like export: images that are not square and ignore rings, the default scenes unchanged."""

from __future__ import annotations

import cv2
import numpy as np

from segzero.data.reasonseg import read_reasonseg
from segzero.defaults import IGNORE
from segzero.shapeworld.generator import (
    IGNORE_RING,
    LIKE_REASONSEG_SIZES,
    PALETTE,
    export_reasonseg_folder,
    like_reasonseg,
    make_split,
)


def test_samples_are_stretched_off_square_and_every_other_one_gets_an_ignore_ring():
    samples = list(make_split("val", 4, "referring"))
    assert all((s.width, s.height) == (112, 112) for s in samples)  # the default scenes stay square
    for sample in samples:
        like = like_reasonseg(sample)
        seed = sample.extra["seed"]
        assert (like.width, like.height) == LIKE_REASONSEG_SIZES[seed % 3] and like.width != like.height
        assert like.image.size == (like.width, like.height) and like.mask.shape == (like.height, like.width)
        target, ignore = like.mask == 1, like.mask == IGNORE
        # Nearest-neighbour stretching: the target is the stretched mask, every pixel in the target's colour.
        stretched = cv2.resize(sample.mask, (like.width, like.height), interpolation=cv2.INTER_NEAREST) == 1
        colour = PALETTE[sample.extra["shapes"][sample.extra["targets"][0]]["name"].split()[1]]
        assert (target == stretched).all() and (np.asarray(like.image)[target] == colour).all()
        if seed % 2:
            assert not ignore.any() and like.extra["like_reasonseg"]["ignore_ring"] == 0
        else:
            ring = cv2.dilate(target.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=IGNORE_RING) > 0
            assert ignore.any() and not (ignore & target).any() and (ignore <= ring).all()
        assert like.boxes == [(int(np.nonzero(target)[1].min()), int(np.nonzero(target)[0].min()),
                               int(np.nonzero(target)[1].max()), int(np.nonzero(target)[0].max()))]  # fmt: skip


def test_the_export_reads_back_exactly_through_lisas_reader(tmp_path):
    samples = [like_reasonseg(s) for s in make_split("val", 4, "reasoning")]
    export_reasonseg_folder(samples, tmp_path / "val")
    back = {s.id: s for s in read_reasonseg(tmp_path, "val")}
    for sample in samples:
        read = back[sample.id]
        assert (read.width, read.height) == (sample.width, sample.height)
        for value in (1, IGNORE):
            exported, drawn = sample.mask == value, read.mask == value
            if not exported.any():
                assert not drawn.any()
                continue
            assert (exported & drawn).sum() / (exported | drawn).sum() > 0.97, (sample.id, value)


def test_the_export_command_writes_it_only_as_a_reasonseg_folder(tmp_path):
    from typer.testing import CliRunner

    from segzero.cli.app import app

    def export(*extra: str):
        return CliRunner().invoke(app, ["shapeworld", "export", "-n", "1", "--split", "val", *extra])

    refused = export("--out", str(tmp_path / "p"), "--like-reasonseg")
    assert "--like-reasonseg shapes a ReasonSeg folder" in str(refused.exception) and not (tmp_path / "p").exists()
    plain = export("--out", str(tmp_path / "plain"), "--format", "reasonseg")
    like = export("--out", str(tmp_path / "like"), "--format", "reasonseg", "--like-reasonseg")
    assert plain.exit_code == like.exit_code == 0
    sizes = {name: next(read_reasonseg(tmp_path / name, "val")).mask.shape for name in ("plain", "like")}
    assert sizes == {"plain": (112, 112), "like": (154, 112)}  # seed 10000000: 112 x 154
