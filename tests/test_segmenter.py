"""SAM2 prompting through transformers, with the tiny random SAM2 loaded from disk."""

import numpy as np
import pytest
from PIL import Image

from segzero.frames import Frame, ObjectPrompt
from segzero.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmenter(tiny_models):
    return Segmenter.from_pretrained(str(tiny_models.segmenter), device="cpu")


@pytest.fixture
def image():
    rng = np.random.default_rng(3)
    return Image.fromarray((rng.random((130, 200, 3)) * 255).astype(np.uint8))


def _spy(monkeypatch, segmenter):
    """Record what reaches the real model (prompt tensors, encoded batch sizes) without changing it."""
    calls = {"forward": [], "encoded": []}
    model = segmenter.model
    forward, embed = model.forward, model.get_image_embeddings

    def spy_forward(*args, **kwargs):
        calls["forward"].append(kwargs)
        return forward(*args, **kwargs)

    def spy_embed(pixel_values, **kwargs):
        calls["encoded"].append(pixel_values.shape[0])
        return embed(pixel_values, **kwargs)

    monkeypatch.setattr(model, "forward", spy_forward)
    monkeypatch.setattr(model, "get_image_embeddings", spy_embed)
    return calls


IMAGE = Frame.image((200, 130))
OBJ = ObjectPrompt(box=(10, 20, 120, 100), points=((40, 50), (80, 70)), frame=IMAGE)


def test_both_mode_sends_box_and_two_positive_points(segmenter, image, monkeypatch):
    calls = _spy(monkeypatch, segmenter)
    out = segmenter.segment_many([image], [[OBJ]], "both")[0]
    sent = calls["forward"][0]
    assert sent["input_labels"].tolist() == [[[1, 1]]]
    assert sent["input_boxes"].shape == (1, 1, 4)
    assert sent["input_points"].shape == (1, 1, 2, 2)
    assert sent["multimask_output"] is True
    assert out.mask.shape == (130, 200) and out.mask.dtype == bool
    assert isinstance(out.score, float) and len(out.object_masks) == 1


@pytest.mark.parametrize("mode,box,points", [("box", True, False), ("points", False, True)])
def test_box_only_and_points_only_modes(segmenter, image, monkeypatch, mode, box, points):
    calls = _spy(monkeypatch, segmenter)
    out = segmenter.segment_many([image], [[OBJ]], mode)[0]
    sent = calls["forward"][0]
    assert ("input_boxes" in sent) is box and ("input_points" in sent) is points
    assert out.mask.shape == (130, 200)


def test_best_candidate_is_the_highest_predicted_iou(segmenter, image):
    emb = segmenter.embed([image])[0]
    out = segmenter.predict(emb, [OBJ])
    import torch

    prompts = segmenter.processor(
        original_sizes=[[130, 200]], input_boxes=[[list(OBJ.box)]], input_points=[[[list(p) for p in OBJ.points]]],
        input_labels=[[[1, 1]]], return_tensors="pt",
    )
    with torch.inference_mode():
        raw = segmenter.model(
            image_embeddings=emb.features, input_boxes=prompts["input_boxes"], input_points=prompts["input_points"],
            input_labels=prompts["input_labels"], multimask_output=True,
        )
    assert raw.iou_scores.shape[-1] == 3
    assert out.object_scores[0] == pytest.approx(raw.iou_scores[0, 0].max().item(), abs=1e-6)


def test_several_objects_union_and_one_encoding_per_image(segmenter, image, monkeypatch):
    other = Image.fromarray(np.zeros((60, 90, 3), dtype=np.uint8))
    calls = _spy(monkeypatch, segmenter)
    objs = [
        OBJ,
        ObjectPrompt(box=(150, 10, 190, 60), points=((170, 30),), frame=IMAGE),
        ObjectPrompt(box=None, points=((5, 5),), frame=IMAGE),
    ]
    on_other = ObjectPrompt(box=(10, 20, 80, 50), points=((40, 30),), frame=Frame.image(other.size))
    outs = segmenter.segment_many([image, other, image, other], [objs, [on_other], [OBJ], []])
    assert sum(calls["encoded"]) == 2  # two distinct images, however many requests on them
    union = np.logical_or.reduce(outs[0].object_masks)
    assert np.array_equal(outs[0].mask, union) and len(outs[0].object_scores) == 3
    assert outs[1].mask.shape == (60, 90)
    assert outs[3].score is None and not outs[3].mask.any()  # nothing to segment: empty, no decoding


def test_missing_prompt_for_the_mode_falls_back_to_what_the_answer_has(segmenter, image, monkeypatch):
    calls = _spy(monkeypatch, segmenter)
    segmenter.segment_many([image], [[ObjectPrompt(box=None, points=((30, 30),), frame=IMAGE)]], "box")
    assert "input_points" in calls["forward"][0] and "input_boxes" not in calls["forward"][0]


def test_unknown_mode_is_refused(segmenter, image):
    with pytest.raises(ValueError, match="segmenter mode"):
        segmenter.predict(segmenter.embed([image])[0], [OBJ], "mask")
