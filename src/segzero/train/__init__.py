"""Training the reasoner: GRPO (Seg-Zero) and the SFT baseline, on TRL's trainers.

Layout:

* :mod:`segzero.train.config`: the recipe dataclasses (:class:`SegZeroArguments` + TRL's
  ``GRPOConfig``/``SFTConfig`` + TRL's ``ModelConfig``), YAML loading and ``--set`` overrides;
* :mod:`segzero.train.data`: prepared rows -> TRL's conversational VLM rows (lazy);
* :mod:`segzero.train.grpo` / :mod:`segzero.train.sft`: the two short training scripts;
* :mod:`segzero.train.run`: resuming and the final save (``output_dir/final`` + ``segzero.json``);
* :mod:`segzero.train.plot`: the curves of a run (rewards, completion length, KL).

Command line: ``segzero train grpo --config recipes/seg_zero_3b.yaml [--set key=value ...]``.
Importing this package does not import torch or TRL.
"""

from __future__ import annotations

from typing import Any


def train(kind: str, config: Any):
    """Run ``kind`` ("grpo" or "sft") training from a loaded :class:`~segzero.train.config.TrainConfig`."""
    if kind == "grpo":
        from segzero.train.grpo import train_grpo

        return train_grpo(config)
    from segzero.train.sft import train_sft

    return train_sft(config)
