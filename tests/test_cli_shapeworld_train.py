"""`segzero shapeworld train-models`: the command that reproduces the shipped ShapeWorld models, run end
to end at a few steps per stage, and its settings (`--config FILE`, `--set key=value`, `fields`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segzero.cli import shapeworld as _shapeworld  # noqa: F401  (registers the shapeworld commands)
from segzero.cli.app import app
from segzero.errors import InputError

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"


def train_models(*args: str):
    return CliRunner().invoke(app, ["shapeworld", "train-models", *args])


def sets(*items: str) -> list[str]:
    """``--set`` options for each ``key=value``."""
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.slow
def test_train_models_runs_every_reasoner_stage_and_keeps_a_fixed_vision_tower_fixed(tmp_path):
    pytest.importorskip("trl")
    import torch
    from safetensors.torch import load_file

    from segzero.hub import read_model_meta

    settings = tmp_path / "quick.yaml"
    settings.write_text(
        "stages: [reasoner]\n"
        f"grpo_recipe: {RECIPE}\n"
        "tower.steps: 2\n"
        "warmup.steps: 7\n"
        "knowledge.steps: 2\n"
        "grpo_overrides: [max_steps=1]\n"
    )
    out = tmp_path / "out"
    # --set comes after the file: 2 warm-up steps, not 7.
    result = train_models(
        "--out", str(out), "--config", str(settings),
        *sets("warmup.steps=2", "warmup.vision_lr_scale=0", "warmup.shape_loss=[kind]"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings) == ["reasoner-build", "tower", "warmup-sft", "knowledge-sft", "grpo-data", "grpo"]
    assert "Stage times" in result.output
    assert "sft step 2/2" in result.output and "sft step 7/7" not in result.output
    assert "shape loss" in result.output  # the warm-up's auxiliary kind head ran
    from datasets import load_from_disk

    # One step of 64 completions, 8 per request, reads 8 requests: the data hold those, each once.
    assert len(load_from_disk(str(out / "data" / "grpo"))) == 8

    built = load_file(out / "reasoner-init" / "model.safetensors")
    init = load_file(out / "reasoner-tower" / "model.safetensors")  # where the warm-up starts
    assert any(not torch.equal(built[k], init[k]) for k in built if "visual" in k)
    referring = load_file(out / "reasoner-referring" / "model.safetensors")
    warm = load_file(out / "reasoner-warmup" / "model.safetensors")  # after the knowledge stage
    for before, after in ((init, referring), (referring, warm)):
        assert all(torch.equal(before[k], after[k]) for k in before if "visual" in k)
        assert any(not torch.equal(before[k], after[k]) for k in before if "visual" not in k)
    final = out / "reasoner"
    assert read_model_meta(final)["reasoner_frame"] == 112
    assert (final / "model.safetensors").is_file() and not (final / "training_args.bin").exists()


@pytest.mark.parametrize(
    ("items", "words"),
    [
        (["stages=[reasoner, sam3]"], ["sam3", "segmenter, reasoner"]),
        (["warmup.vision_lr_scale=-1"], ["warmup.vision_lr_scale", ">= 0"]),
        (["knowledge.vision_full_from=-1"], ["knowledge.vision_full_from", ">= 0"]),
        (["warmup.shape_loss=[kind, texture]"], ["texture", "colour"]),
        (["warmup_thinking=long"], ["warmup_thinking", "scene-echo"]),
        (["warmup.step=2"], ["warmup.step", "did you mean warmup.steps", "segzero shapeworld fields"]),
        (["warmup.steps=many"], ["warmup.steps must be a whole number", "'many'"]),
        (["warmup.lr=fast"], ["warmup.lr must be a number"]),
        (["segmenter.n_shapes=[2, 3, 4]"], ["segmenter.n_shapes must be a list of 2"]),
        (["tower.steps=0"], ["tower.steps must be at least 1"]),
        (["warmup=null"], ["warmup takes its fields as warmup.FIELD"]),
        (["knowledge=7"], ["knowledge takes null"]),
        (["knowledge=null", "knowledge.steps=2"], ["knowledge.steps is set, but knowledge is null"]),
        (["warmup.steps"], ["key=value"]),
    ],
)
def test_train_models_names_a_bad_setting_before_any_stage(tmp_path, items, words):
    result = train_models("--out", str(tmp_path / "out"), *sets(*items))
    assert isinstance(result.exception, InputError), result.output
    for word in words:
        assert word in str(result.exception)
    assert not any(tmp_path.iterdir())


def test_a_bad_setting_is_one_sentence_and_exit_2(tmp_path, monkeypatch, capsys):
    from segzero.cli import main

    out = str(tmp_path / "out")
    monkeypatch.setattr(sys, "argv", ["segzero", "shapeworld", "train-models", "--out", out, "--set", "warmup.steps=x"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: warmup.steps must be a whole number") and "Traceback" not in message
    assert not any(tmp_path.iterdir())


def test_a_missing_settings_file_is_named(tmp_path):
    result = train_models("--out", str(tmp_path / "out"), "--config", str(tmp_path / "nope.yaml"))
    assert isinstance(result.exception, InputError)
    assert "nope.yaml does not exist" in str(result.exception)


def test_settings_set_fields_of_the_run_and_of_its_stages(tmp_path):
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig
    from segzero.shapeworld.training.settings import read_settings

    file = tmp_path / "s.yaml"
    file.write_text("knowledge: null\nreasoner.rope_theta: 100\ndevice: cuda\n")
    config = read_settings(file, ["stages=segmenter", "segmenter.n_shapes=[1, 3]", "tower.lr=3e-4"])
    assert config.knowledge is None and config.stages == ("segmenter",)
    assert config.reasoner.rope_theta == 100.0 and isinstance(config.reasoner.rope_theta, float)
    assert config.segmenter.n_shapes == (1, 3) and config.tower.lr == 3e-4
    # The rest keeps the defaults, the shipped models'.
    default = ShapeWorldTrainConfig()
    assert config.warmup == default.warmup and config.reasoner.frame == default.reasoner.frame
    # `device` reaches every stage when the run starts; the config itself is left as it was set.
    moved = config.on_device()
    assert {moved.segmenter.device, moved.warmup.device, moved.tower.device} == {"cuda"}
    assert config.segmenter.device == "cpu"
    assert read_settings(None, ["tower=null"]).tower is None


def test_fields_lists_every_setting_with_its_default():
    from segzero.shapeworld.training.settings import describe_settings

    rows = {key: (default, help_text) for key, default, help_text in describe_settings()}
    assert rows["warmup.steps"][0] == "7000" and rows["knowledge.steps"][0] == "4000"
    assert rows["warmup.vision_lr_scale"][0] == "0.0"
    assert rows["knowledge"][0] == "SFTLoopConfig" and "null skips it" in rows["knowledge"][1]
    assert all(help_text for _, help_text in rows.values())
    assert "warmup.evaluate" not in rows and "warmup.eval_samples" not in rows  # not settable
    result = CliRunner().invoke(app, ["shapeworld", "fields"])
    assert result.exit_code == 0, result.output
    for key in ("stages", "segmenter.steps", "tower.steps", "warmup_thinking", "grpo_overrides"):
        assert key in result.output


def test_grpo_data_are_sized_to_what_the_recipes_steps_read(tmp_path):
    pytest.importorskip("trl")
    from segzero.shapeworld.training.grpo import grpo_requests_read

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
    result = train_models("--out", str(out), *sets("stages=[reasoner]", f"grpo_recipe={broken}"))
    assert isinstance(result.exception, InputError)
    assert "num_generatoins" in str(result.exception) and "num_generations" in str(result.exception)
    assert not out.exists()


def test_train_all_names_a_bad_config_before_any_stage(tmp_path):
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig, train_all

    with pytest.raises(InputError, match="warmup_thinking must be one of"):
        train_all(tmp_path / "out", ShapeWorldTrainConfig(warmup_thinking="long", stages=("segmenter",)))
    config = ShapeWorldTrainConfig(knowledge_templates=("could_roll", "could_fly"), stages=("segmenter",))
    with pytest.raises(InputError, match="could_fly"):
        train_all(tmp_path / "out", config)
    assert not any(tmp_path.iterdir())


def test_final_thinking_is_the_last_supervised_stage_s():
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig

    assert ShapeWorldTrainConfig().final_thinking == "scene-explain"
    assert ShapeWorldTrainConfig(knowledge=None, warmup_thinking="scene").final_thinking == "scene"
