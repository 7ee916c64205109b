"""GRPO learns: a few steps through `segzero train grpo` raise the accuracy reward on held-out scenes.

Start: the shipped warm-up reasoner (``models/reasoner-warmup``), trained on referring requests and, in
its knowledge stage, on nine reasoning templates, never on the three this test trains and measures on.
Train: ``K_STEPS`` GRPO steps with ``recipes/shapeworld_grpo.yaml``, the recipe ``segzero shapeworld
train-models`` uses, run as a child process exactly as a user types it (``max_steps`` and
``learning_rate`` overridden), on reasoning requests of the three templates that name one shape and
mean another ("the shape closest to the triangle", "... furthest from the triangle", "the shape that
has the same colour as the triangle but is not the triangle"). The warm-up reads them literally and
answers the shape they name; only the reward says otherwise. Measure: the mean accuracy reward
(``bbox_iou + bbox_l1 + points_l1``, the paper's hard rewards, in [0, 3]) of greedy answers on
``N_HELD_OUT`` validation scenes of the same templates, before and after.

What it measured, run by run, is in docs/shapeworld-log.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segzero.shapeworld.shipped import SHIPPED_MODELS
from segzero.shapeworld.training.examples import HELD_OUT_TEMPLATES

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "shapeworld_grpo.yaml"
#: Reasoning templates that name one shape and mean another, which no supervised stage trains on.
TEMPLATES = HELD_OUT_TEMPLATES
#: GRPO steps (the recipe's 8 prompts x 8 samples each) and their learning rate.
K_STEPS = 20
LEARNING_RATE = 5e-5
PROMPTS_PER_STEP = 8
#: Held-out validation scenes the accuracy reward is measured on.
N_HELD_OUT = 96
#: Least gain of the mean accuracy reward (in [0, 3]) over the starting checkpoint.
MIN_GAIN = 0.1


def held_out_accuracy(reasoner_dir: Path) -> float:
    from benchmarks.shapeworld_probes import evaluate_reasoner
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import reasoner_examples

    reasoner = Reasoner.from_pretrained(str(reasoner_dir), device="cpu", dtype="float32", frame=112)
    samples = list(make_split("val", N_HELD_OUT, "reasoning", templates=TEMPLATES))
    # Greedy answers, as the demo and `segzero eval` decode: the same weights give the same figure.
    return evaluate_reasoner(reasoner, reasoner_examples(samples, 112))["accuracy"]


def grpo_gain(
    tmp_path: Path, overrides: tuple[str, ...] = (), start: Path = SHIPPED_MODELS / "reasoner-warmup"
) -> tuple[float, float]:
    """(accuracy before, accuracy after) ``K_STEPS`` GRPO steps from ``start`` (the shipped warm-up)."""
    from segzero.shapeworld.training.grpo import prepare_grpo_data, run_grpo

    data = prepare_grpo_data(
        tmp_path / "data", PROMPTS_PER_STEP * K_STEPS, 112, family="reasoning", templates=TEMPLATES
    )
    final = run_grpo(
        RECIPE,
        start,
        data,
        tmp_path / "run",
        [f"max_steps={K_STEPS}", f"learning_rate={LEARNING_RATE}", "save_strategy=no", *overrides],
    )
    return held_out_accuracy(start), held_out_accuracy(final)


@pytest.mark.slow
def test_grpo_raises_the_held_out_accuracy_reward(tmp_path):
    pytest.importorskip("trl")
    before, after = grpo_gain(tmp_path)
    assert after - before >= MIN_GAIN, f"accuracy reward {before:.3f} -> {after:.3f}"
