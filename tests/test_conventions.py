"""Reasoner families and their coordinate conventions: which grid an answer is on, how it reaches the image,
what the prompt says, and the one rule that picks the convention. No model runs."""

from __future__ import annotations

import json

import pytest

from segzero.answer import parse_answer
from segzero.config import PipelineConfig, model_settings
from segzero.errors import InputError, ModelLoadError
from segzero.families import reasoner_family, segmenter_family
from segzero.frames import Frame, answer_grid, to_image_frame
from segzero.hub import read_model_type, write_model_meta
from segzero.prompts import PROMPTS


def _folder(tmp_path, model_type: str, name: str = "model"):
    """A model folder whose config.json names ``model_type`` (all the rule reads before loading)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


@pytest.mark.parametrize(
    ("model_type", "name", "coordinates", "token"),
    [
        ("qwen2_vl", "Qwen2-VL", "pixels", 28),
        ("qwen2_5_vl", "Qwen2.5-VL", "pixels", 28),
        ("qwen3_vl", "Qwen3-VL", "relative", 32),
        ("qwen3_vl_moe", "Qwen3-VL", "relative", 32),
    ],
)
def test_each_reasoner_family_has_its_convention(model_type, name, coordinates, token):
    family = reasoner_family(model_type, "some/model")
    assert (family.name, family.coordinates, family.token_pixels) == (name, coordinates, token)


def test_an_unsupported_family_is_one_sentence_naming_the_supported_ones():
    with pytest.raises(ModelLoadError) as err:
        reasoner_family("llava", "llava-hf/llava-1.5-7b-hf")
    message = str(err.value)
    assert "llava-hf/llava-1.5-7b-hf is a 'llava' model" in message
    for name in ("Qwen2-VL", "Qwen2.5-VL", "Qwen3-VL", "qwen3_vl"):
        assert name in message
    assert message.count(".") == message.count("1.5") + message.count("2.5") + 1  # one sentence
    with pytest.raises(ModelLoadError, match=r"'sam' model; .*SAM 2 \(sam2, sam2_video\), SAM 3 \(sam3_video"):
        segmenter_family("sam", "facebook/sam-vit-base")
    assert segmenter_family("sam3_video", "facebook/sam3").name == "SAM 3"


def test_the_answer_grid_is_the_view_for_pixels_and_1000_for_relative():
    assert answer_grid(840, "pixels") == Frame.reasoner(840)
    assert answer_grid(840, "relative") == Frame.reasoner(1000)
    assert answer_grid(224, "relative") == Frame.reasoner(1000)  # whatever size the image is shown at
    with pytest.raises(ValueError, match="coordinates must be one of"):
        answer_grid(840, "normalised")


@pytest.mark.parametrize("view", [224, 840])
def test_a_relative_answer_reaches_the_image_through_the_one_mapping(view):
    answer = "<answer>{'bbox': [250, 100, 750, 1000], 'points_1': [500, 500], 'points_2': [0, 999]}</answer>"
    (obj,) = parse_answer(answer, answer_grid(view, "relative")).objects
    assert obj.frame == Frame.reasoner(1000)
    mapped = to_image_frame(obj, (640, 480))
    # floor(v * side / 1000 + 0.5), clamped into the image: the same numbers whatever the view was.
    assert mapped.box == (160, 48, 480, 479)
    assert mapped.points == ((320, 240), (0, 480 - 1))


def test_a_pixel_answer_depends_on_the_view():
    answer = "<answer>{'bbox': [56, 56, 112, 112], 'points_1': [56, 56], 'points_2': [60, 60]}</answer>"
    (obj,) = parse_answer(answer, answer_grid(224, "pixels")).objects
    assert to_image_frame(obj, (448, 448)).box == (112, 112, 224, 224)


def test_the_label_is_read_and_carried_through_the_mapping():
    answer = "<answer>{'bbox': [10, 10, 20, 20], 'points_1': [15, 15], 'label': '  red   mug '}</answer>"
    (obj,) = parse_answer(answer, 1000).objects
    assert obj.label == "red mug"
    assert to_image_frame(obj, (100, 100)).label == "red mug"
    assert to_image_frame(obj, (100, 100)).to_json()["label"] == "red mug"
    (multi,) = parse_answer('<answer>[{"bbox_2d": [1, 2, 3, 4], "label": 7}]</answer>', 1000).objects
    assert multi.label is None and "label" not in multi.to_json()  # not text: no label


def test_pixel_prompts_are_the_released_text_and_relative_ones_add_one_sentence():
    pixels = PROMPTS["seg_zero"].render("The cup.")
    relative = PROMPTS["seg_zero"].render("The cup.", "relative")
    assert "0 to 1000" not in pixels and "{coordinates}" not in pixels
    sentence = "Give every coordinate as an integer from 0 to 1000, relative to the image's width and height."
    assert relative == pixels.replace("i.e., <think>", sentence + "i.e., <think>")
    for variant in PROMPTS.values():  # every variant suits a relative reasoner, just before its example
        text = variant.render("the cup", "relative")
        assert text.count(sentence) == 1 and text.index(sentence) < text.index("i.e.,")


def test_the_concept_prompt_asks_for_a_label():
    variant = PROMPTS["concept"]
    assert variant.names_object and not PROMPTS["seg_zero"].names_object
    text = variant.render("what can I drink from")
    assert "short noun phrase naming it as label" in text and "'label': 'red mug'" in text
    (obj,) = parse_answer(text[text.rindex("<answer>") :], 840).objects  # its own example parses
    assert obj.label == "red mug"


def test_the_model_type_is_read_without_loading(tmp_path, monkeypatch):
    assert read_model_type(_folder(tmp_path, "qwen3_vl")) == "qwen3_vl"
    assert read_model_type(tmp_path / "nothing") is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert read_model_type(tmp_path / "broken") is None
    monkeypatch.chdir(tmp_path)
    assert read_model_type("someone/uncached-model") is None  # offline in tests: not fetched, not known


def test_the_convention_comes_from_the_family_and_a_contradiction_is_refused(tmp_path):
    qwen3 = _folder(tmp_path, "qwen3_vl", "qwen3")
    qwen25 = _folder(tmp_path, "qwen2_5_vl", "qwen25")
    assert model_settings(str(qwen3))["coordinates"] == "relative"
    assert model_settings(str(qwen25))["coordinates"] == "pixels"
    assert PipelineConfig(reasoner=str(qwen3)).resolved().coordinates == "relative"
    assert model_settings(str(qwen3), {"coordinates": "relative"})["coordinates"] == "relative"
    with pytest.raises(InputError) as err:
        PipelineConfig(reasoner=str(qwen3), coordinates="pixels").resolved()
    assert str(err.value) == (
        f"--coordinates pixels contradicts the reasoner {qwen3}, which uses relative (as a Qwen3-VL model); "
        "leave the option out."
    )


def test_segzero_json_records_the_convention_over_the_family(tmp_path):
    model = _folder(tmp_path, "qwen2_5_vl")
    write_model_meta(model, frame=224, prompt="seg_zero", coordinates="relative")
    assert model_settings(str(model))["coordinates"] == "relative"
    with pytest.raises(InputError, match="which uses relative \\(its segzero.json\\)"):
        model_settings(str(model), PipelineConfig(reasoner=str(model), coordinates="pixels"))


def test_an_unsupported_reasoner_is_refused_before_anything_loads(tmp_path):
    model = _folder(tmp_path, "llava")
    with pytest.raises(ModelLoadError, match="is a 'llava' model; segzero runs the reasoner families"):
        PipelineConfig(reasoner=str(model)).resolved()


def test_the_option_is_generated_from_the_field(tmp_path):
    from typer.testing import CliRunner

    from segzero.cli import app

    result = CliRunner().invoke(app, ["segment", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--coordinates" in result.output and "its family's" in result.output
    assert "concept" in result.output  # the new segmenter mode
    bad = CliRunner().invoke(app, ["segment", str(tmp_path / "x.png"), "the cup", "--coordinates", "nope"])
    assert isinstance(bad.exception, InputError)  # `segzero` prints it as one line and exits 2
    assert str(bad.exception) == "--coordinates 'nope' is not known; choose one of: pixels, relative."


@pytest.mark.parametrize(
    ("name", "processes", "generations"),
    [
        ("qwen3_vl_4b.yaml", 8, 8),
        ("qwen3_vl_8b.yaml", 8, 8),
        ("qwen3_vl_4b_lora.yaml", 1, 4),
        ("qwen3_vl_8b_lora.yaml", 1, 4),
    ],
)
def test_the_qwen3_vl_recipes_keep_sixteen_prompts_a_step(name, processes, generations):
    from pathlib import Path

    from segzero.train.config import load_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / name
    script, training, model = load_config("grpo", recipe, {"bf16": False})
    assert model.model_name_or_path.startswith("Qwen/Qwen3-VL-") and model.use_peft == name.endswith("_lora.yaml")
    assert script.frame == 832 and script.frame % reasoner_family("qwen3_vl", "x").token_pixels == 0
    assert training.num_generations == generations
    completions = training.per_device_train_batch_size * training.gradient_accumulation_steps * processes
    assert completions == 16 * generations
    assert training.gradient_accumulation_steps % training.steps_per_generation == 0
    assert training.loss_type == "grpo" and training.beta == 5e-3 and training.use_bias_correction_kl is False
