"""The ShapeWorld models that ship inside the package: where they lie, what they may weigh, how long
their answers run.

``models/`` holds ``segmenter/`` (the mini SAM2), ``reasoner-warmup/`` (the reasoner after its supervised
stages) and ``reasoner/`` (the same after GRPO), as ``segzero shapeworld train-models`` writes them.
"""

from __future__ import annotations

from pathlib import Path

#: Folder inside the package that holds the shipped checkpoints.
SHIPPED_MODELS = Path(__file__).resolve().parent / "models"

#: Generation budget of a ShapeWorld answer: room for the longest knowledge-stage target (four shapes
#: listed, the reasoning written out, then the answer), with a margin.
MAX_COMPLETION_TOKENS = 224

#: The shipped checkpoints must stay under this many bytes together (they ship in the wheel).
SIZE_BUDGET = 25_000_000
