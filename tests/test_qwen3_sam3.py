"""Qwen3-VL reasoners and SAM 3 segmenters: the tiny offline models load through the users' path and run in
the pipeline, box and points through SAM 3's tracker, the object phrase through its text interface."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from PIL import Image

from segzero.errors import InputError, ModelLoadError
from segzero.frames import Frame, ObjectPrompt
from segzero.segmenter import ConceptSegmenter, Segmenter, load_segmenter
from segzero.tiny import QWEN3_VL_ADDED_TOKENS, QWEN_SPECIAL_TOKENS, chat_template
from tests.conftest import QWEN3_FRAME, TAUGHT_QWEN3_ANSWER

IMAGE = Frame.image((200, 130))


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(5)
    return Image.fromarray((rng.random((130, 200, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def concept(tiny_qwen3):
    """SAM 3's text interface, keeping every instance (random weights score about 0.25)."""
    seg = ConceptSegmenter.from_pretrained(str(tiny_qwen3.segmenter), device="cpu")
    seg.score_threshold = 0.0
    return seg


def test_tiny_qwen3_vl_is_the_real_architecture_with_its_own_template_and_tokens(tiny_qwen3):
    processor = transformers.AutoProcessor.from_pretrained(tiny_qwen3.reasoner)
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen3.reasoner)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert processor.chat_template == chat_template("qwen3_vl")
    tok = processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in (*QWEN_SPECIAL_TOKENS, *QWEN3_VL_ADDED_TOKENS)]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # the released order, one block
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    # <think> is one token that decoding keeps, as in Qwen3-VL.
    text = "<think> a </think><answer>{'label': 'red cup'}</answer><|im_end|>"
    encoded = tok(text, add_special_tokens=False)["input_ids"]
    assert encoded[0] == tok.convert_tokens_to_ids("<think>")
    assert tok.decode(encoded, skip_special_tokens=True) == text.removesuffix("<|im_end|>")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "the cup"}]}]
    rendered = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # Qwen3-VL's template opens with the user turn: no default system prompt, unlike Qwen2.5-VL's.
    assert rendered == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>the cup<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=[rendered], images=[Image.new("RGB", (QWEN3_FRAME, QWEN3_FRAME))], return_tensors="pt")
    # 16 px patches merged 2x2: a frame x frame view is (frame/32)^2 tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, QWEN3_FRAME // 16, QWEN3_FRAME // 16]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == (QWEN3_FRAME // 32) ** 2


def test_tiny_sam3_loads_both_interfaces_from_one_checkpoint(tiny_qwen3):
    for cls in (transformers.Sam3TrackerModel, transformers.Sam3Model):
        _, info = cls.from_pretrained(tiny_qwen3.segmenter, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], cls.__name__


@pytest.mark.parametrize("mode", ["both", "box", "points"])
def test_sam3_takes_box_and_points_through_its_tracker_as_sam2_does(tiny_qwen3, image, mode):
    seg = load_segmenter(str(tiny_qwen3.segmenter), mode=mode, device="cpu")
    assert type(seg) is Segmenter and type(seg.model).__name__ == "Sam3TrackerModel"
    obj = ObjectPrompt(box=(10, 20, 120, 100), points=((40, 50), (80, 70)), frame=IMAGE)
    out = seg.segment_many([image], [[obj]], mode)[0]
    assert out.mask.shape == (130, 200) and out.mask.dtype == bool
    assert isinstance(out.score, float) and len(out.object_masks) == 1


def test_concept_mode_keeps_the_instances_of_the_phrase_inside_the_box(concept, image):
    left = ObjectPrompt(box=(0, 0, 99, 129), points=(), frame=IMAGE, label="red cup")
    right = ObjectPrompt(box=(100, 0, 199, 129), points=(), frame=IMAGE, label="red cup")
    (emb,) = concept.embed([image])
    ((masks, scores),) = concept._instances([emb], ["red cup"], None)
    assert masks.shape[1:] == (130, 200) and len(masks) == len(scores) > 0

    def expected(x1, x2):
        inside = masks[:, :, x1 : x2 + 1].sum(axis=(1, 2)) >= 0.5 * np.maximum(masks.sum(axis=(1, 2)), 1)
        return np.logical_or.reduce(masks[inside]) if inside.any() else np.zeros((130, 200), bool), inside

    out_left, out_right = concept.segment_many([image, image], [[left], [right]])
    for out, (x1, x2) in ((out_left, (0, 99)), (out_right, (100, 199))):
        mask, inside = expected(x1, x2)
        np.testing.assert_array_equal(out.mask, mask)
        assert out.score == (float(scores[inside].max()) if inside.any() else 0.0)


def test_concept_mode_asks_once_per_phrase_and_falls_back_to_the_box_exemplar(concept, image, monkeypatch):
    seen = []
    instances = concept._instances

    def spy(embeddings, texts, boxes):
        seen.append((len(embeddings), list(texts), boxes))
        return instances(embeddings, texts, boxes)

    monkeypatch.setattr(concept, "_instances", spy)
    cup = ObjectPrompt(box=(0, 0, 99, 129), frame=IMAGE, label="red cup")
    cup_too = ObjectPrompt(box=(100, 0, 199, 129), frame=IMAGE, label="red cup")
    no_label = ObjectPrompt(box=(10, 10, 60, 60), frame=IMAGE)
    nothing = ObjectPrompt(box=None, points=(), frame=IMAGE)
    outs = concept.segment_many([image, image], [[cup, cup_too], [no_label, nothing]])
    assert seen == [(1, ["red cup"], None), (1, ["visual"], [[10, 10, 60, 60]])]
    assert not outs[1].object_masks[1].any() and outs[1].object_scores[1] == 0.0
    assert outs[0].mask.shape == (130, 200)


def test_concept_mode_refuses_prompts_outside_the_image_frame(concept, image):
    with pytest.raises(ValueError, match="map it with segzero.frames.to_image_frame"):
        concept.segment_many([image], [[ObjectPrompt(box=(1, 2, 3, 4), frame=Frame.reasoner(1000), label="x")]])
    with pytest.raises(ValueError, match="serves the segmenter mode 'concept'"):
        concept.segment_many([image], [[]], "both")


def test_concept_mode_needs_a_sam3_segmenter(tiny_models):
    with pytest.raises(ModelLoadError) as err:
        load_segmenter(str(tiny_models.segmenter), mode="concept", device="cpu")
    assert str(err.value).startswith(f"The segmenter {tiny_models.segmenter} is a SAM 2 checkpoint")
    assert "text prompts (--segmenter-mode concept)" in str(err.value)


def test_the_pipeline_runs_qwen3_vl_in_its_convention(tiny_qwen3, image):
    from segzero.pipeline import ReasoningSegmenter

    for mode in ("both", "concept"):
        pipe = ReasoningSegmenter.from_pretrained(
            str(tiny_qwen3.reasoner), str(tiny_qwen3.segmenter), device="cpu", frame=QWEN3_FRAME,
            max_new_tokens=4, segmenter_mode=mode,
        )  # fmt: skip
        assert pipe.config.coordinates == "relative" and pipe.answer_frame == Frame.reasoner(1000)
        assert "from 0 to 1000" in pipe.reasoner.chat_text("the cup")
        result = pipe.segment(image, "the cup")
        assert result.mask.shape == (130, 200)
    assert isinstance(pipe.segmenter, ConceptSegmenter)
    from segzero.config import PipelineConfig

    tracker = load_segmenter(str(tiny_qwen3.segmenter), device="cpu")  # box and points only
    config = PipelineConfig(reasoner=str(tiny_qwen3.reasoner), segmenter=str(tiny_qwen3.segmenter),
                            segmenter_mode="concept")  # fmt: skip
    with pytest.raises(InputError, match="serves the modes both, box, points, not --segmenter-mode concept"):
        ReasoningSegmenter(pipe.reasoner, tracker, config)


def test_a_contradicting_convention_is_refused_before_any_model_loads(tiny_qwen3, monkeypatch):
    from segzero import reasoner as R
    from segzero.pipeline import ReasoningSegmenter

    monkeypatch.setattr(R.Reasoner, "generate", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(InputError, match="--coordinates pixels contradicts the reasoner .* uses relative"):
        ReasoningSegmenter.from_pretrained(str(tiny_qwen3.reasoner), str(tiny_qwen3.segmenter), coordinates="pixels")
    # The reasoner's own loader checks it too (for a hub id whose family is only known once it loads).
    with pytest.raises(InputError, match="contradicts"):
        R.Reasoner.from_pretrained(str(tiny_qwen3.reasoner), device="cpu", coordinates="pixels")


def test_an_unsupported_checkpoint_is_one_sentence_from_the_command_line(tiny_qwen3, tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys

    llava = tmp_path / "llava"
    shutil.copytree(tiny_qwen3.reasoner, llava)
    config = json.loads((llava / "config.json").read_text())
    (llava / "config.json").write_text(json.dumps({**config, "model_type": "llava"}))
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    run = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "x.png"), "the cup", "--reasoner", str(llava),
         "--segmenter", str(tiny_qwen3.segmenter), "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "1000"},
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"error: The reasoner {llava} is a 'llava' model; segzero runs the reasoner families Qwen2-VL (qwen2_vl), "
        "Qwen2.5-VL (qwen2_5_vl), Qwen3-VL (qwen3_vl, qwen3_vl_moe)."
    )


@pytest.mark.slow
def test_taught_qwen3_answer_reaches_the_image_and_sam3_segments_its_phrase(taught_qwen3, image):
    """The whole path on a Qwen3-VL that really answers: 0-1000 grid -> image pixels -> SAM 3."""
    from segzero.pipeline import ReasoningSegmenter

    pipe = ReasoningSegmenter.from_pretrained(
        str(taught_qwen3.reasoner), str(taught_qwen3.segmenter), device="cpu", frame=QWEN3_FRAME,
        max_new_tokens=96, segmenter_mode="concept",
    )  # fmt: skip
    pipe.segmenter.score_threshold = 0.0
    result = pipe.segment(image, "what can I drink from?")
    assert result.completion == TAUGHT_QWEN3_ANSWER and result.status.value == "ok"
    (obj,) = result.objects
    # bbox [100,150,600,850] on the grid of 1000, image 200x130: floor(v * side / 1000 + 0.5)
    assert obj.box == (20, 20, 120, 111) and obj.points == ((60, 52), (80, 78)) and obj.label == "red cup"
    (emb,) = pipe.segmenter.embed([image])
    ((masks, _),) = pipe.segmenter._instances([emb], ["red cup"], None)
    inside = masks[:, 20:112, 20:121].sum(axis=(1, 2)) >= 0.5 * np.maximum(masks.sum(axis=(1, 2)), 1)
    expected = np.logical_or.reduce(masks[inside]) if inside.any() else np.zeros((130, 200), bool)
    np.testing.assert_array_equal(result.mask, expected)
    boxed = ReasoningSegmenter(pipe.reasoner, load_segmenter(str(taught_qwen3.segmenter), device="cpu"))
    assert boxed.segment(image, "what can I drink from?").objects == result.objects  # through the tracker
