"""Training configuration: recipes, overrides, the paper's loss settings, resume rules, curves. No model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segzero.errors import InputError
from segzero.train.config import load_config, parse_overrides, parse_value, read_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _kind(recipe: Path) -> str:
    return "grpo" if {"num_generations", "reward_funcs", "beta"} & set(read_recipe(recipe)) else "sft"


GRPO_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if _kind(p) == "grpo")
SFT_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if _kind(p) == "sft")
PAPER_GRPO = ["seg_zero_3b.yaml", "seg_zero_7b.yaml"] + [p.name for p in GRPO_RECIPES if p.name.startswith("ablation_")]
#: Recipes that train with the paper's 16 prompts per optimizer step, and their process counts.
SIXTEEN_PROMPTS = {**{name: 8 for name in PAPER_GRPO}, "lora_single_gpu_24gb.yaml": 1}
# This machine has no GPU: recipes are loaded with bf16 off (TrainingArguments refuses bf16 on a CPU).
CPU = {"bf16": False}


def test_yaml_reads_exponent_floats_and_flow_values():
    assert parse_value("1e-6") == 1e-6
    assert parse_value("5.0e-3") == 5e-3
    assert parse_value("[tensorboard, wandb]") == ["tensorboard", "wandb"]
    assert parse_value("null") is None and parse_value("false") is False and parse_value("True") is True
    assert parse_value("no") == "no" and parse_value("on") == "on"  # YAML 1.2: save_strategy=no is a string
    assert parse_overrides(["--learning-rate=2e-5", "max_steps=3"]) == {"learning_rate": 2e-5, "max_steps": 3}
    with pytest.raises(InputError, match="key=value"):
        parse_overrides(["learning_rate"])


@pytest.mark.parametrize("recipe", GRPO_RECIPES, ids=lambda p: p.name)
def test_every_grpo_recipe_loads(recipe):
    script, training, model = load_config("grpo", recipe, CPU)
    assert training.generation_batch_size % training.num_generations == 0
    # Each sampled batch is used within one optimizer step (on-policy; several batches per step are fine).
    assert training.gradient_accumulation_steps % training.steps_per_generation == 0
    if training.reward_weights is not None:
        assert len(training.reward_weights) == len(script.reward_funcs)
    if recipe.name in SIXTEEN_PROMPTS:
        # TRL counts completions: per device x accumulation x processes = 16 prompts x generations.
        completions = (
            training.per_device_train_batch_size * training.gradient_accumulation_steps * SIXTEEN_PROMPTS[recipe.name]
        )
        assert completions == 16 * training.num_generations


@pytest.mark.parametrize("recipe", SFT_RECIPES, ids=lambda p: p.name)
def test_every_sft_recipe_loads(recipe):
    script, training, _ = load_config("sft", recipe, CPU)
    assert training.completion_only_loss is not False


@pytest.mark.parametrize("name", PAPER_GRPO)
def test_paper_recipes_set_the_papers_objective(name):
    """The settings where TRL 1.16's defaults differ from the paper's GRPO are set explicitly."""
    raw = read_recipe(RECIPES / name)
    for key in ("loss_type", "beta", "use_bias_correction_kl", "scale_rewards", "num_iterations", "epsilon"):
        assert key in raw, f"{name} leaves {key} to TRL's default"
    _, training, model = load_config("grpo", RECIPES / name, CPU)
    assert training.loss_type == "grpo"
    assert training.beta == 5e-3
    assert training.use_bias_correction_kl is False
    assert training.scale_rewards == "group"
    assert training.num_iterations == 1 and training.epsilon == 0.2
    assert training.steps_per_generation == training.gradient_accumulation_steps  # one update per rollout
    assert training.num_generations == 8 and training.temperature == 1.0
    assert training.learning_rate == 1e-6 and training.weight_decay == 0.01
    assert training.lr_scheduler_type == "constant" and training.max_grad_norm == 1.0
    assert training.max_completion_length == 1300 and training.num_train_epochs == 1
    assert raw["bf16"] is True and training.activation_checkpointing is True
    assert model.dtype == "bfloat16"


def test_sft_baseline_learns_the_no_think_answer():
    script, training, _ = load_config("sft", RECIPES / "sft_baseline_3b.yaml", CPU)
    assert script.prompt == "no_think" and training.completion_only_loss is True
    assert load_config("sft", RECIPES / "tiny_cpu_sft.yaml", CPU).script.prompt == "no_think"


def test_strict_and_soft_recipes_use_the_right_rewards():
    # The main recipes reproduce the reference: its seg_strict rewards as exact twins, its entropy bonus.
    for name in ("seg_zero_3b.yaml", "seg_zero_7b.yaml"):
        best, training, _ = load_config("grpo", RECIPES / name, CPU)
        assert best.reward_funcs == [
            "thinking_format_reference",
            "seg_format_strict_reference",
            "bbox_iou_reference",
            "bbox_l1_reference",
            "points_l1_reference",
        ]
        assert training.entropy_coef == 1e-3
    soft = load_config("grpo", RECIPES / "ablation_soft_accuracy.yaml", CPU).script
    assert soft.reward_funcs[2:] == ["bbox_iou_soft", "bbox_l1_soft", "points_l1_soft"]
    assert load_config("grpo", RECIPES / "ablation_no_think.yaml", CPU).script.prompt == "no_think"


def test_box_only_and_points_only_recipes_use_their_ablation_rewards():
    from segzero.rewards import BOX_ONLY_REWARDS, POINTS_ONLY_REWARDS

    box = load_config("grpo", RECIPES / "ablation_box_only.yaml", CPU).script
    assert box.prompt == "box_only" and box.reward_funcs == list(BOX_ONLY_REWARDS)
    assert box.reward_funcs == ["thinking_format", "seg_format_box_only", "bbox_iou", "bbox_l1"]
    points = load_config("grpo", RECIPES / "ablation_points_only.yaml", CPU).script
    assert points.prompt == "points_only" and points.reward_funcs == list(POINTS_ONLY_REWARDS)
    assert points.reward_funcs == ["thinking_format", "seg_format_points_only", "points_l1_no_box"]
    assert points.segmenter is None  # the paper's form needs no SAM2 in the loop
    # The option the recipe's comment describes, mask_iou from the two points, loads as written there.
    option = parse_overrides(
        [
            "reward_funcs=[thinking_format,seg_format_points_only,points_l1_no_box,mask_iou]",
            "reward_weights=[1.0,1.0,1.0,1.0]",
            "segmenter=facebook/sam2.1-hiera-large",
            "segmenter_mode=points",
        ]
    )
    with_mask = load_config("grpo", RECIPES / "ablation_points_only.yaml", {**CPU, **option}).script
    assert with_mask.reward_funcs[-1] == "mask_iou" and with_mask.segmenter_mode == "points"


def test_overrides_win_and_unknown_keys_are_refused(tmp_path):
    cfg = load_config("grpo", RECIPES / "seg_zero_3b.yaml", {**CPU, "learning_rate": 3e-6, "output_dir": "x"})
    assert cfg.training.learning_rate == 3e-6 and cfg.training.output_dir == "x"
    with pytest.raises(InputError, match="did you mean learning_rate"):
        load_config("grpo", RECIPES / "seg_zero_3b.yaml", {**CPU, "learning_rat": 1.0})
    with pytest.raises(InputError, match="Unknown sft setting"):
        load_config("sft", RECIPES / "sft_baseline_3b.yaml", {**CPU, "beta": 0.1})
    with pytest.raises(InputError, match="does not exist"):
        load_config("grpo", tmp_path / "missing.yaml")
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  name: x\n")
    with pytest.raises(InputError, match="flat"):
        load_config("grpo", nested)


def test_semantic_checks_say_what_to_change():
    base = {**CPU, "output_dir": "o"}
    recipe = RECIPES / "seg_zero_3b.yaml"
    with pytest.raises(InputError, match="Unknown reward"):
        load_config("grpo", recipe, {**base, "reward_funcs": ["bbox_iou", "nope"], "reward_weights": None})
    with pytest.raises(InputError, match="one weight per reward"):
        load_config("grpo", recipe, {**base, "reward_weights": [1.0]})
    with pytest.raises(InputError, match="needs `segmenter`"):
        load_config("grpo", recipe, {**base, "reward_funcs": ["mask_iou"], "reward_weights": None})
    with pytest.raises(InputError, match="Unknown prompt variant"):
        load_config("grpo", recipe, {**base, "prompt": "nope"})
    with pytest.raises(InputError, match="dataset_path"):
        load_config("grpo", recipe, {**base, "dataset_path": None})
    with pytest.raises(InputError, match="neither auto, never"):
        load_config("grpo", recipe, {**base, "resume": "/no/such/checkpoint"})


def test_fields_listing_carries_help():
    from segzero.train.config import describe_fields

    rows = {name: (owner, help_text) for name, owner, _, help_text in describe_fields("grpo")}
    for key in ("dataset_path", "reward_funcs", "frame", "beta", "loss_type", "use_peft", "lora_r", "learning_rate"):
        assert key in rows and rows[key][1], key
    assert rows["reward_funcs"][0] == "SegZeroArguments" and rows["beta"][0] == "GRPOConfig"


def test_resume_rules(tmp_path):
    from segzero.train.run import checkpoint_to_resume

    assert checkpoint_to_resume(tmp_path / "new", "auto") is None
    assert checkpoint_to_resume(tmp_path, "never") is None
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert checkpoint_to_resume(tmp_path, "auto").endswith("checkpoint-10")
    assert checkpoint_to_resume(tmp_path, str(tmp_path / "checkpoint-2")).endswith("checkpoint-2")
    (tmp_path / "checkpoint-12").mkdir()  # killed while saving: the weights, no trainer_state.json
    (tmp_path / "checkpoint-12" / "model.safetensors").write_bytes(b"")
    assert checkpoint_to_resume(tmp_path, "auto").endswith("checkpoint-10")
    with pytest.raises(InputError, match="already holds checkpoints"):
        checkpoint_to_resume(tmp_path, "never")
    with pytest.raises(InputError, match="not a training checkpoint"):
        checkpoint_to_resume(tmp_path, str(tmp_path))


def test_plot_training_draws_rewards_length_and_kl(tmp_path):
    from PIL import Image

    from segzero.train.plot import panels, plot_training, read_history

    history = [
        {
            "step": s,
            "loss": 0.1 / s,
            "reward": 0.5 * s,
            "rewards/thinking_format/mean": 0.2 * s,
            "rewards/bbox_iou/mean": 0.1 * s,
            "completions/mean_length": 100.0 + s,
            "completions/min_length": 90.0,
            "completions/max_length": 120.0 + s,
            "kl": 0.001 * s,
            "epoch": s / 10,
        }
        for s in range(1, 6)
    ] + [{"step": 5, "train_runtime": 12.0}]
    checkpoint = tmp_path / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    parsed = read_history(tmp_path)
    assert [s for s, _ in parsed["kl"]] == [1, 2, 3, 4, 5]
    titles = [t for t, _ in panels(parsed)]
    assert titles[:3] == ["Rewards", "Completion length (tokens)", "KL to the reference model"]
    out = plot_training(tmp_path, smooth=0.5)
    assert out == tmp_path / "training_curves.png"
    assert Image.open(out).size[0] > 0
    with pytest.raises(InputError, match="No trainer_state.json"):
        plot_training(tmp_path / "checkpoint-5" / "nothing")
