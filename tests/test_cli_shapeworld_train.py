"""`segzero shapeworld train-models`: the command that reproduces the shipped ShapeWorld models, run end
to end at a few steps per stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segzero.cli import shapeworld as _shapeworld  # noqa: F401  (registers the shapeworld commands)
from segzero.cli.app import app

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"


def train_models(*args: str):
    return CliRunner().invoke(app, ["shapeworld", "train-models", *args])


@pytest.mark.slow
def test_train_models_runs_every_reasoner_stage_and_keeps_a_fixed_vision_tower_fixed(tmp_path):
    pytest.importorskip("trl")
    import torch
    from safetensors.torch import load_file

    from segzero.hub import read_model_meta

    result = train_models(
        "--out", str(tmp_path), "--stages", "reasoner", "--recipe", str(RECIPE),
        "--tower-steps", "2", "--warmup-steps", "2", "--knowledge-steps", "2", "--grpo-steps", "1",
        "--vision-lr-scale", "0", "--shape-loss", "kind",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert list(timings) == ["reasoner-build", "tower", "warmup-sft", "knowledge-sft", "grpo-data", "grpo"]
    assert "Stage times" in result.output
    assert "shape loss" in result.output  # the warm-up's auxiliary kind head ran
    from datasets import load_from_disk

    # One step of 64 completions, 8 per request, reads 8 requests: the data hold those, each once.
    assert len(load_from_disk(str(tmp_path / "data" / "grpo"))) == 8

    built = load_file(tmp_path / "reasoner-init" / "model.safetensors")
    init = load_file(tmp_path / "reasoner-tower" / "model.safetensors")  # where the warm-up starts
    assert any(not torch.equal(built[k], init[k]) for k in built if "visual" in k)
    referring = load_file(tmp_path / "reasoner-referring" / "model.safetensors")
    warm = load_file(tmp_path / "reasoner-warmup" / "model.safetensors")  # after the knowledge stage
    for before, after in ((init, referring), (referring, warm)):
        assert all(torch.equal(before[k], after[k]) for k in before if "visual" in k)
        assert any(not torch.equal(before[k], after[k]) for k in before if "visual" not in k)
    final = tmp_path / "reasoner"
    assert read_model_meta(final)["reasoner_frame"] == 112
    assert (final / "model.safetensors").is_file() and not (final / "training_args.bin").exists()


def test_train_models_names_an_unknown_stage(tmp_path):
    result = train_models("--out", str(tmp_path), "--stages", "reasoner,sam3")
    from segzero.errors import InputError

    assert isinstance(result.exception, InputError)
    assert "sam3" in str(result.exception) and "segmenter, reasoner" in str(result.exception)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--vision-lr-scale", "--vision-full-from"])
def test_train_models_rejects_a_negative_vision_schedule(tmp_path, option):
    result = train_models("--out", str(tmp_path), option, "-1")
    assert result.exit_code != 0
    assert option.lstrip("-") in result.output
    assert not any(tmp_path.iterdir())


def test_train_models_names_an_unknown_shape_attribute(tmp_path):
    result = train_models("--out", str(tmp_path), "--stages", "reasoner", "--shape-loss", "kind,texture")
    from segzero.errors import InputError

    assert isinstance(result.exception, InputError)
    assert "texture" in str(result.exception) and "colour" in str(result.exception)
    assert not any(tmp_path.iterdir())


def test_grpo_data_are_sized_to_what_the_recipes_steps_read(tmp_path):
    pytest.importorskip("trl")
    from segzero.errors import InputError
    from segzero.shapeworld.train_models import grpo_requests_read

    assert grpo_requests_read(RECIPE) == 20 * 64 // 8
    assert grpo_requests_read(RECIPE, ["max_steps=50", "gradient_accumulation_steps=2"]) == 50 * 128 // 8
    with pytest.raises(InputError, match="max_steps"):
        grpo_requests_read(RECIPE, ["max_steps=-1"])


def test_train_models_checks_the_grpo_recipe_before_the_warmup(tmp_path):
    """A recipe that `segzero train grpo` would refuse stops the run before its first reasoner stage."""
    pytest.importorskip("trl")
    broken = tmp_path / "broken.yaml"
    broken.write_text(RECIPE.read_text() + "num_generatoins: 4\n")
    out = tmp_path / "out"
    result = train_models("--out", str(out), "--stages", "reasoner", "--recipe", str(broken))
    from segzero.errors import InputError

    assert isinstance(result.exception, InputError)
    assert "num_generatoins" in str(result.exception) and "num_generations" in str(result.exception)
    assert not out.exists()


def test_train_models_names_an_unknown_thinking_before_any_stage(tmp_path):
    from segzero.errors import InputError
    from segzero.shapeworld.train_models import ShapeWorldTrainConfig, train_all

    result = train_models("--out", str(tmp_path), "--stages", "reasoner", "--thinking", "long")
    assert isinstance(result.exception, InputError)
    assert "scene-echo" in str(result.exception)
    with pytest.raises(InputError, match="warmup_thinking must be one of"):
        train_all(tmp_path / "out", ShapeWorldTrainConfig(warmup_thinking="long"), stages=("segmenter",))
    assert not any(tmp_path.iterdir())


def test_train_all_names_an_unknown_knowledge_template_before_any_stage(tmp_path):
    from segzero.errors import InputError
    from segzero.shapeworld.train_models import ShapeWorldTrainConfig, train_all

    config = ShapeWorldTrainConfig(knowledge_templates=("could_roll", "could_fly"))
    with pytest.raises(InputError, match="could_fly"):
        train_all(tmp_path / "out", config, stages=("segmenter",))
    assert not any(tmp_path.iterdir())


def test_knowledge_stage_teaches_reasoning_but_keeps_the_held_out_templates_out():
    from segzero.shapeworld.train_models import (
        HELD_OUT_TEMPLATES,
        MEANS,
        ShapeWorldTrainConfig,
        knowledge_examples,
    )

    config = ShapeWorldTrainConfig(knowledge_samples=(40, 60))
    examples = knowledge_examples(config)
    assert len(examples) == 100
    families = [e.sample.extra["family"] for e in examples]
    assert families[:5] == ["referring"] * 2 + ["reasoning"] * 3
    templates = {e.sample.extra["template"] for e in examples if e.sample.extra["family"] == "reasoning"}
    assert templates == set(config.knowledge_templates) and not templates & set(HELD_OUT_TEMPLATES)
    for example in examples:  # the reasoning is written out before the choice
        assert f"{example.sample.extra['explanation']} {MEANS}" in example.completion


def test_final_thinking_is_the_last_supervised_stage_s():
    from segzero.shapeworld.train_models import ShapeWorldTrainConfig

    assert ShapeWorldTrainConfig().final_thinking == "scene-explain"
    assert ShapeWorldTrainConfig(knowledge=None, warmup_thinking="scene").final_thinking == "scene"
