"""GRPO learns: a few steps through `segzero train grpo` raise the accuracy reward on held-out scenes.

Start: the shipped warm-up reasoner (``models/reasoner-warmup``). Train: ``K`` GRPO steps with
``recipes/shapeworld_grpo.yaml``, the recipe ``segzero shapeworld train-models`` uses, run as a child
process exactly as a user types it (only ``max_steps`` overridden). Measure: the mean accuracy reward
(``bbox_iou + bbox_l1 + points_l1``, the paper's hard rewards, in [0, 3]) of greedy answers on held-out
validation scenes, before and after.

Not met by the shipped models, so marked as an expected failure (strict: it fails the suite the day it
passes, so that the mark is removed). From the shipped warm-up (vision tower slow, then at the full
rate): 2.250 -> 2.172 after 8 steps (recipe rate 1e-5, and 2e-5 alike). From the earlier full-rate
warm-up, greedy accuracy on these 64 scenes: 2.047 -> 2.109 after 8 steps, 2.109 after 16, 1.984
after 24 (recipe rate 2e-5); 8 steps at 1e-4: 1.812; 5e-5: 1.922; 4 PPO iterations per batch: 1.953.
No step count a CI run affords gives a gain above the measure's noise (about 0.06 here); the full
40-step recipe reads 2.141 on these scenes and does not beat the warm-up on 200 test scenes
(docs/shapeworld.md, Table 1). With the earlier, image-blind warm-up the test passed (0.490 -> 0.771
in 8 steps at 1e-4, sampled answers) and failed with ``learning_rate=0`` (0.490 -> 0.490).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segzero.shapeworld.train_models import SHIPPED_MODELS

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"
#: GRPO steps (the recipe's 8 prompts x 8 samples each, its learning rate).
K_STEPS = 8
PROMPTS_PER_STEP = 8
#: Held-out validation scenes the accuracy reward is measured on.
N_HELD_OUT = 64
#: Least gain of the mean accuracy reward (in [0, 3]) over the starting checkpoint.
MIN_GAIN = 0.15


def held_out_accuracy(reasoner_dir: Path) -> float:
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.train_models import evaluate_reasoner, reasoner_examples

    reasoner = Reasoner.from_pretrained(str(reasoner_dir), device="cpu", dtype="float32", frame=112)
    examples = reasoner_examples(list(make_split("val", N_HELD_OUT, "referring")), 112)
    # Greedy answers, as the demo and `segzero eval` decode: the same weights give the same figure.
    return evaluate_reasoner(reasoner, examples)["accuracy"]


def grpo_gain(
    tmp_path: Path, overrides: tuple[str, ...] = (), start: Path = SHIPPED_MODELS / "reasoner-warmup"
) -> tuple[float, float]:
    """(accuracy before, accuracy after) K GRPO steps from ``start`` (the shipped warm-up reasoner)."""
    from segzero.shapeworld.train_models import prepare_grpo_data, run_grpo

    data = prepare_grpo_data(tmp_path / "data", PROMPTS_PER_STEP * K_STEPS, 112)
    final = run_grpo(
        RECIPE, start, data, tmp_path / "run", [f"max_steps={K_STEPS}", "save_strategy=no", *overrides]
    )
    return held_out_accuracy(start), held_out_accuracy(final)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="GRPO does not yet raise the scene-listing warm-up's held-out reward within a CI budget "
    "(ShapeWorld issue; see the module docstring)",
)
def test_grpo_raises_the_held_out_accuracy_reward(tmp_path):
    pytest.importorskip("trl")
    before, after = grpo_gain(tmp_path)
    assert after - before >= MIN_GAIN, f"accuracy reward {before:.3f} -> {after:.3f}"
