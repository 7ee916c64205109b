"""GRPO training of the reasoner with TRL's ``GRPOTrainer`` (Seg-Zero's reinforcement learning stage).

The script only wires things together: prepared rows -> lazy GRPO view (:mod:`segzero.train.data`),
reward names -> TRL callables (:func:`segzero.rewards.make_trl_rewards`), TRL's config as given by the
recipe. How TRL's loss settings map to the paper's objective is written out in ``recipes/README.md``
and in the recipes themselves.
"""

from __future__ import annotations

from pathlib import Path

from segzero.train.config import TrainConfig
from segzero.train.data import grpo_dataset
from segzero.train.run import run_training


def build_rewards(script) -> list:
    """TRL reward callables in ``script.reward_funcs`` order; loads the segmenter only for ``mask_iou``."""
    from segzero.rewards import make_trl_rewards

    segmenter = None
    if "mask_iou" in script.reward_funcs:
        from accelerate import PartialState

        from segzero.segmenter import load_segmenter

        # One frozen segmenter per process, on that process's device.
        segmenter = load_segmenter(script.segmenter, mode=script.segmenter_mode, device=str(PartialState().device))
    return make_trl_rewards(script.reward_funcs, segmenter=segmenter, mode=script.segmenter_mode)


def train_grpo(config: TrainConfig) -> Path:
    """Run (or continue) GRPO training; returns the ``output_dir/final`` folder of the trained reasoner."""
    from trl import GRPOTrainer

    script = config.script
    with_masks = "mask_iou" in script.reward_funcs

    def make_trainer(data, frame: int, coordinates: str, **common) -> GRPOTrainer:
        dataset = grpo_dataset(data, script.prompt, frame, coordinates=coordinates, with_masks=with_masks)
        return GRPOTrainer(reward_funcs=build_rewards(script), train_dataset=dataset, **common)

    return run_training(config, "grpo", make_trainer)
