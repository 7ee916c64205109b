"""Supervised fine-tuning baseline (the paper's "SFT" row) with TRL's ``SFTTrainer``.

Same prepared data as GRPO; the target is the ground-truth answer, ``<answer>{solution}</answer>``
(no reasoning: there is no reasoning data), learnt with the prompt tokens masked out (TRL's
completion-only loss on prompt/completion rows). See :mod:`segzero.train.data`.
"""

from __future__ import annotations

from pathlib import Path

from segzero.errors import InputError
from segzero.train.config import TrainConfig
from segzero.train.data import sft_dataset
from segzero.train.run import run_training


def train_sft(config: TrainConfig) -> Path:
    """Run (or continue) SFT; returns the ``output_dir/final`` folder of the trained reasoner."""
    from trl import SFTTrainer

    if config.training.completion_only_loss is False:
        raise InputError("SFT trains on the answer only: leave completion_only_loss unset or true.")
    prompt = config.script.prompt

    def make_trainer(data, frame: int, coordinates: str, **common) -> SFTTrainer:
        return SFTTrainer(train_dataset=sft_dataset(data, prompt, frame, coordinates), **common)

    return run_training(config, "sft", make_trainer)
