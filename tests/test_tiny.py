"""The tiny offline models load through the users' path and behave like the real architectures."""

from __future__ import annotations

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file

from segzero.errors import InputError
from segzero.prompts import PROMPTS
from segzero.tiny import (
    QWEN_SPECIAL_TOKENS,
    build_reasoner,
    build_segmenter,
    count_parameters,
    folder_size,
    chat_template,
)

ANSWER = (
    "<think> x </think>"
    "<answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>"
)


@pytest.fixture(scope="module")
def reasoner(tiny_models):
    processor = transformers.AutoProcessor.from_pretrained(tiny_models.reasoner)
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_models.reasoner)
    return processor, model


def _prompt(processor, request: str) -> str:
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": PROMPTS["seg_zero"].render(request)}],
        }
    ]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_reasoner_loads_as_qwen2_5_vl_with_consistent_token_ids(reasoner):
    processor, model = reasoner
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(QWEN_SPECIAL_TOKENS)
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.config.text_config.vocab_size == len(tok)
    gen = model.generation_config
    assert gen.do_sample is False
    assert ids["<|im_end|>"] in gen.eos_token_id and gen.pad_token_id == ids["<|endoftext|>"]


def test_chat_template_is_qwens_and_renders_image_then_text_then_generation_prompt(reasoner):
    processor, _ = reasoner
    assert processor.chat_template == chat_template("qwen2_5_vl")
    text = _prompt(processor, "The red circle.")
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>Please find 'the red circle' with bbox" in text
    assert text.endswith("</answer><|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("size", [(224, 224), (448, 448)])
def test_image_becomes_frame_over_28_squared_tokens(reasoner, tiny_models, size):
    processor, model = reasoner
    frame = tiny_models.frame
    inputs = processor(
        text=[_prompt(processor, "the cup")], images=[Image.new("RGB", size)], return_tensors="pt"
    )
    # 14 px patches, 2x2 merged: a frame x frame image is (frame/14)^2 patches, (frame/28)^2 tokens;
    # a larger image is scaled down to the frame's area, never up.
    assert inputs["image_grid_thw"].tolist() == [[1, frame // 14, frame // 14]]
    assert inputs["pixel_values"].shape[0] == (frame // 14) ** 2
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == (frame // 28) ** 2


def test_left_padded_batch_generates_new_tokens(reasoner, tiny_models):
    processor, model = reasoner
    processor.tokenizer.padding_side = "left"
    frame = tiny_models.frame
    texts = [_prompt(processor, "the cup"), _prompt(processor, "the largest blue triangle on the right")]
    images = [Image.new("RGB", (frame, frame), colour) for colour in [(200, 30, 30), (30, 30, 200)]]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape[0] == 2 and 1 <= new.shape[1] <= 4
    assert ((new >= 0) & (new < len(processor.tokenizer))).all()


@pytest.mark.parametrize("text", [ANSWER, "¿Dónde está el café? 🍞\n\t(x≥1)"])
def test_tokenizer_round_trips_text_exactly(reasoner, text):
    tok = reasoner[0].tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_are_single_ids_and_dropped_by_skip_special(reasoner):
    tok = reasoner[0].tokenizer
    ids = tok("<|im_start|>assistant\n<think> a </think><|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think> a </think>"


@pytest.mark.parametrize("load", ["sam2", "auto"])
def test_segmenter_gives_three_candidates_at_original_size(tiny_models, load):
    if load == "sam2":
        processor = transformers.Sam2Processor.from_pretrained(tiny_models.segmenter)
        model = transformers.Sam2Model.from_pretrained(tiny_models.segmenter)
    else:
        processor = transformers.AutoProcessor.from_pretrained(tiny_models.segmenter)
        model = transformers.AutoModel.from_pretrained(tiny_models.segmenter)
    assert type(model).__name__ == "Sam2Model"
    image = Image.new("RGB", (200, 130), (20, 180, 20))  # W=200, H=130: not square on purpose
    inputs = processor(
        images=[image],
        input_boxes=[[[20, 10, 150, 120]]],
        input_points=[[[[50, 40], [100, 90]]]],
        input_labels=[[[1, 1]]],
        return_tensors="pt",
    )
    with torch.no_grad():
        embeddings = model.get_image_embeddings(inputs["pixel_values"])
        out = model(
            image_embeddings=embeddings,
            input_points=inputs["input_points"],
            input_labels=inputs["input_labels"],
            input_boxes=inputs["input_boxes"],
            multimask_output=True,
        )
    assert out.iou_scores.shape == (1, 1, 3)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])
    assert masks[0].shape == (1, 3, 130, 200)


def _tensors(folder):
    return load_file(folder / "model.safetensors")


def test_same_seed_gives_identical_models_and_another_seed_does_not(tmp_path):
    a = build_reasoner(tmp_path / "a", seed=1, frame=56)
    b = build_reasoner(tmp_path / "b", seed=1, frame=56)
    c = build_reasoner(tmp_path / "c", seed=2, frame=56)
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()

    sa, sb = build_segmenter(tmp_path / "sa", seed=1), build_segmenter(tmp_path / "sb", seed=1)
    ta, tb = _tensors(sa), _tensors(sb)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_default_models_are_small(tiny_models):
    # Tied embeddings are stored once, so the file count is the real parameter count.
    assert count_parameters(tiny_models.reasoner) < 1_000_000
    assert folder_size(tiny_models.reasoner) + folder_size(tiny_models.segmenter) < 5_000_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame": 100},
        {"frame": 28},
        {"hidden_size": 60, "num_heads": 4},
        {"vision_hidden": 24, "vision_heads": 4},
        {"mrope_section": [2, 7, 6]},  # head_dim 16: the three counts must add up to 8
        {"mrope_section": [4, 0, 4]},  # rows and columns need a frequency each; time may have none
        {"mrope_section": [4, 4]},
    ],
)
def test_bad_reasoner_sizes_are_refused_before_building(tmp_path, kwargs):
    with pytest.raises(InputError):
        build_reasoner(tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_rotary_settings_reach_the_saved_model(tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = build_reasoner(tmp_path / "r", frame=56, rope_theta=100.0, mrope_section=[1, 2, 5])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    rope = model.model.language_model.rotary_emb
    assert rope.mrope_section == [1, 2, 5]
    head_dim = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    assert rope.inv_freq[1].item() == pytest.approx(100.0 ** (-2 / head_dim))


def test_a_rotary_split_without_time_puts_every_band_on_rows_or_columns(tmp_path):
    """``mrope_section`` [0, r, c]: image tokens of one row share every row band's angle and differ in the
    column bands, and the model still generates (the split is the real Qwen2.5-VL code path)."""
    import numpy as np
    import torch
    from PIL import Image

    from segzero.reasoner import Reasoner

    out = build_reasoner(tmp_path / "r", frame=56, rope_theta=3.0, mrope_section=[0, 3, 5])
    reasoner = Reasoner.from_pretrained(str(out), device="cpu", frame=56)
    image = Image.fromarray(np.zeros((56, 56, 3), np.uint8))
    inputs = reasoner.processor(text=[reasoner.chat_text("the cup")], images=[image], return_tensors="pt")
    captured = []
    rotary = reasoner.model.model.language_model.rotary_emb
    hook = rotary.register_forward_hook(lambda _module, _args, output: captured.append(output[0]) and None)
    with torch.no_grad():
        reasoner.model(**inputs)
    hook.remove()
    image_token = reasoner.model.config.image_token_id
    tokens = (inputs["input_ids"][0] == image_token).nonzero().flatten()  # the 2x2 grid, row-major
    angles = captured[0][0, tokens, :8]  # cos of each band's angle: 3 row bands, then 5 column bands
    torch.testing.assert_close(angles[0, :3], angles[1, :3])  # same row: the row bands agree
    assert not torch.allclose(angles[0, 3:], angles[1, 3:])  # next column: the column bands differ
    torch.testing.assert_close(angles[0, 3:], angles[2, 3:])  # same column, next row
    assert not torch.allclose(angles[0, :3], angles[2, :3])
    assert reasoner.generate([image], ["the cup"], max_new_tokens=3)
