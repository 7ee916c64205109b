"""Dense pretraining of the reasoner's vision tower (`segzero.shapeworld.training.tower`)."""

from __future__ import annotations

import pytest

from tests.test_shapeworld_sft import _tiny_start


def test_tower_targets_put_each_shape_on_the_token_under_its_box_centre():
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import SHAPE_ATTRIBUTES, frame_box
    from segzero.shapeworld.training.tower import tower_targets

    samples = list(make_split("train", 6, "referring", n_shapes=(3, 4)))
    targets = tower_targets(samples, 112, 28)
    assert targets.present.shape == (6 * 16,) and targets.boxes.shape == (6 * 16, 4)
    held = 0
    for i, sample in enumerate(samples):
        centres = {}
        for shape in sample.extra["shapes"]:
            x1, y1, x2, y2 = frame_box(sample, shape, 112)
            token = i * 16 + int((y1 + y2) / 2 // 28) * 4 + int((x1 + x2) / 2 // 28)
            area = (x2 - x1 + 1) * (y2 - y1 + 1)
            if token not in centres or area <= centres[token][0]:
                centres[token] = (area, shape, (x1, y1, x2, y2))
        for token, (_, shape, box) in centres.items():
            size, colour, kind = shape["name"].split()
            assert targets.present[token]
            assert SHAPE_ATTRIBUTES["kind"][targets.attributes["kind"][token]] == kind
            assert SHAPE_ATTRIBUTES["colour"][targets.attributes["colour"][token]] == colour
            assert SHAPE_ATTRIBUTES["size"][targets.attributes["size"][token]] == size
            assert targets.boxes[token].tolist() == pytest.approx([v / 112 for v in box])
        held += len(centres)
    assert int(targets.present.sum()) == held >= 18


def test_tower_pretraining_trains_the_tower_alone(tiny_models, tmp_path):
    """The stage teaches the tower's heads colour (chance 1/6) where the same run at learning rate 0
    stays at chance; it changes the vision tower and leaves the language model byte for byte."""
    from safetensors.torch import load_file

    from segzero.hub import read_model_meta
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.training.tower import TowerPretrainConfig, pretrain_tower

    start = _tiny_start(tiny_models, tmp_path)
    config = TowerPretrainConfig(steps=60, batch_size=8, lr=3e-3, warmup=5, scenes=64, eval_scenes=32)
    trained = pretrain_tower(start, tmp_path / "tower", config, log=lambda _: None)
    config.lr = 0.0
    frozen = pretrain_tower(start, tmp_path / "frozen", config, log=lambda _: None)
    assert trained["val"]["colour"] > 0.7 and frozen["val"]["colour"] < 0.4
    assert trained["final_loss"] < frozen["final_loss"]

    before, after = (
        load_file(start / "model.safetensors"),
        load_file(tmp_path / "tower" / "model.safetensors"),
    )
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].equal(after[name]) != ("visual" in name), name
    assert read_model_meta(tmp_path / "tower")["reasoner_frame"] == tiny_models.frame
    Reasoner.from_pretrained(str(tmp_path / "tower"), device="cpu", frame=tiny_models.frame)
