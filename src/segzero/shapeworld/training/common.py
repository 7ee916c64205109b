"""What the training stages share: their progress log, their learning-rate schedule, and where each
stage's scenes lie inside the splits.

Scene seeds: sample ``i`` of a stage is ``make_split(split, ..., seed_offset=OFFSET + i)``, so stages
that draw from the same split never share a scene. The warm-up starts at 0 in ``train``, the
evaluations at 0 in ``val`` and ``test``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: Knowledge-stage reasoning samples, in ``train``.
KNOWLEDGE_SEED_OFFSET = 2_000_000
#: Supervised generalized-form samples before GRPO (``benchmarks/shapeworld_no_target.py``), in ``train``.
GENERALIZED_SFT_SEED_OFFSET = 3_000_000
#: GRPO training samples, in ``train``.
GRPO_SEED_OFFSET = 5_000_000
#: Tower-pretraining scenes, in ``train``.
TOWER_SEED_OFFSET = 7_000_000
#: Samples whose text the reasoner's tokenizer learns its merges from, in ``train``.
CORPUS_SEED_OFFSET = 9_000_000
#: Tower-pretraining validation scenes, in ``val``.
TOWER_VAL_OFFSET = 50_000

#: Where a stage reports progress, one line at a time.
Log = Callable[[str], None]


def print_log(message: str) -> None:
    """The default :data:`Log`: print and flush (a long CPU run is watched as it goes)."""
    print(message, flush=True)


def lr_at(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    """Learning rate at ``step`` of ``steps``: linear warm-up to ``peak``, then cosine down to 5% of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
