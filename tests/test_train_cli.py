"""`segzero train grpo|sft` end to end on the CPU: tiny Qwen2.5-VL, tiny prepared data, the real recipes.

Each run goes through the typer app exactly as the command line does, saves checkpoints, continues
after an interruption, and leaves a final model that the pipeline loads and segments with.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segzero.cli import train as _train  # noqa: F401  (registers `train` and `plot-training`)
from segzero.cli.app import app
from tests.test_train_data import FRAME, make_prepared

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads of tiny matmuls wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("train-cli") / "shapeworld")


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(
            f"exit {result.exit_code}: {result.exception}\n{result.output[-2000:]}"
        ) from result.exception
    return result.output


def train_args(kind: str, models, data: Path, out: Path, *sets: str) -> list[str]:
    recipe = RECIPES / ("tiny_cpu.yaml" if kind == "grpo" else "tiny_cpu_sft.yaml")
    args = ["train", kind, "--config", str(recipe), "--output-dir", str(out)]
    for item in (f"model_name_or_path={models.reasoner}", f"dataset_path={data}", *sets):
        args += ["--set", item]
    return args


def history(run: Path) -> list[dict]:
    return json.loads((run / "trainer_state.json").read_text())["log_history"]


def segment_with(final: Path, models, prompt: str | None = None):
    from segzero.pipeline import ReasoningSegmenter

    seg = ReasoningSegmenter.from_pretrained(
        str(final), str(models.segmenter), device="cpu", prompt=prompt, max_new_tokens=8
    )
    image = Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    return seg, seg.segment(image, "the red square")


def test_grpo_trains_resumes_and_the_result_segments(tiny_models, prepared, tmp_path):
    run = tmp_path / "grpo"
    args = train_args("grpo", tiny_models, prepared, run)
    output = run_cli(*args)
    # One readable line a step, numbers as numbers; no log dicts, no save bars in between.
    steps = [line for line in output.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(re.search(r"  reward -?\d+\.\d{3} \(thinking_format -?\d\.\d\d, ", line) for line in steps)
    assert "{'loss'" not in output and "Writing model shards" not in output
    assert "done: 4 steps in" in output

    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    logged = [e for e in history(run) if "loss" in e]
    assert [e["step"] for e in logged] == [1, 2, 3, 4]
    for key in ("reward", "rewards/thinking_format/mean", "rewards/points_l1/mean", "completions/mean_length", "kl"):
        assert all(key in e for e in logged), key
    assert all(e["completions/mean_length"] <= 16 for e in logged)
    final = run / "final"
    assert json.loads((final / "segzero.json").read_text())["reasoner_frame"] == FRAME

    # Interrupted after step 2: the newest checkpoint and the final model are gone. Mark the saved log
    # so that a run that silently started over (and logged steps 1-2 afresh) would be caught.
    shutil.rmtree(run / "checkpoint-4")
    shutil.rmtree(final)
    (run / "trainer_state.json").unlink()
    state_file = run / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["resumed_marker"] = 1.0
    state_file.write_text(json.dumps(state))
    with pytest.raises(AssertionError, match="already holds checkpoints"):
        run_cli(*args, "--resume", "never")
    run_cli(*args)  # resume: auto
    resumed = json.loads((run / "trainer_state.json").read_text())
    assert resumed["global_step"] == 4
    steps = [e["step"] for e in resumed["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4]
    assert resumed["log_history"][0].get("resumed_marker") == 1.0  # steps 1-2 were not run again
    assert (run / "checkpoint-4").is_dir()

    seg, result = segment_with(final, tiny_models, "seg_zero")
    assert seg.frame == FRAME
    assert result.mask.shape == (48, 80) and result.mask.dtype == bool

    run_cli("plot-training", str(run))
    assert (run / "training_curves.png").stat().st_size > 0


def interrupt_after_first_checkpoint(run: Path) -> None:
    """Leave ``run`` as a run killed between its first and second checkpoint."""
    for path in sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[1:]:
        shutil.rmtree(path)
    for name in ("final", "adapter"):
        shutil.rmtree(run / name, ignore_errors=True)
    (run / "trainer_state.json").unlink()


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-6, err_msg=key)


def test_sft_trains_resumes_to_the_same_weights_and_segments(tiny_models, prepared, tmp_path):
    run = tmp_path / "sft"
    args = train_args("sft", tiny_models, prepared, run)
    run_cli(*args)
    logged = [e for e in history(run) if "loss" in e]
    assert [e["step"] for e in logged] == [1, 2, 3, 4]
    assert all(np.isfinite(e["loss"]) and e["loss"] > 0 for e in logged)
    meta = json.loads((run / "final" / "segzero.json").read_text())
    assert meta == {**meta, "reasoner_frame": FRAME, "prompt": "no_think", "method": "sft"}
    uninterrupted = weights(run / "final")
    key = next(k for k in uninterrupted if k.endswith("layers.0.mlp.up_proj.weight"))
    assert not np.allclose(uninterrupted[key].numpy(), weights(tiny_models.reasoner)[key].numpy())

    # Killed after checkpoint-2, run again: steps 3-4 start from checkpoint-2's weights, optimizer,
    # scheduler, data position and random state, so the result is the uninterrupted run's.
    interrupt_after_first_checkpoint(run)
    run_cli(*args)
    assert_same_weights(weights(run / "final"), uninterrupted)

    seg, result = segment_with(run / "final", tiny_models)
    assert seg.prompt == "no_think"  # the prompt it was trained with, from segzero.json
    assert result.mask.shape == (48, 80)


def test_lora_adapter_is_merged_into_the_final_model(tiny_models, prepared, tmp_path):
    run = tmp_path / "lora"
    target = r"model\.language_model\.layers\.\d+\.self_attn\.(q|v)_proj"
    args = train_args(
        "sft", tiny_models, prepared, run,
        "use_peft=true", "lora_r=4", "lora_alpha=8", f"lora_target_modules='{target}'", "learning_rate=0.05",
    )
    run_cli(*args)
    final = run / "final"
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert not (final / "adapter_config.json").exists()  # a full model, not an adapter
    trained, base = weights(final), weights(tiny_models.reasoner)
    assert set(trained) == set(base)  # same layout as the base: no lora_A/lora_B left
    key = next(k for k in base if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert not np.allclose(trained[key].numpy(), base[key].numpy())  # the adapter's update is in the weights
    frozen = next(k for k in base if k.endswith("layers.0.mlp.up_proj.weight"))
    assert np.array_equal(trained[frozen].numpy(), base[frozen].numpy())

    interrupt_after_first_checkpoint(run)  # the adapter checkpoint resumes too
    run_cli(*args)
    assert_same_weights(weights(final), trained)
    _, result = segment_with(final, tiny_models, "no_think")
    assert result.mask.shape == (48, 80)


def test_grpo_with_the_mask_reward_runs_sam2_in_the_loop(tiny_models, prepared, tmp_path):
    run = tmp_path / "mask"
    run_cli(
        *train_args(
            "grpo", tiny_models, prepared, run,
            "reward_funcs=[thinking_format, mask_iou]", "reward_weights=[1.0, 2.0]",
            f"segmenter={tiny_models.segmenter}", "max_steps=1", "save_strategy=no",
        )
    )
    (entry,) = [e for e in history(run) if "loss" in e]
    assert 0.0 <= entry["rewards/mask_iou/mean"] <= 1.0


def test_grpo_with_the_reference_rewards_and_entropy_bonus(tiny_models, prepared, tmp_path):
    """The reference recipes' settings: the reward twins are logged by name, and the loss carries veRL's
    entropy bonus, policy loss - 1e-3 x mean token entropy."""
    from segzero.rewards_reference import SEGZERO_REFERENCE_REWARDS

    run = tmp_path / "reference"
    twins = ",".join(SEGZERO_REFERENCE_REWARDS)
    run_cli(
        *train_args(
            "grpo", tiny_models, prepared, run,
            f"reward_funcs=[{twins}]", "entropy_coef=1e-3", "max_steps=1", "save_strategy=no",
        )
    )  # fmt: skip
    (entry,) = [e for e in history(run) if "loss" in e]
    assert all(f"rewards/{name}/mean" in entry for name in SEGZERO_REFERENCE_REWARDS)
    assert entry["entropy"] > 0
    assert entry["loss"] == pytest.approx(entry["policy_loss"] - 1e-3 * entry["entropy"], rel=1e-4, abs=1e-9)


def test_fields_lists_every_recipe_key():
    out = run_cli("train", "fields", "grpo")
    for key in ("dataset_path", "reward_funcs", "max_prompt_length", "beta", "loss_type", "lora_r"):
        assert key in out


def test_bad_recipe_is_one_sentence(tmp_path):
    result = CliRunner().invoke(app, ["train", "grpo", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception)
