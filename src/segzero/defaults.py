"""Project-wide defaults, defined once and imported everywhere else."""

from __future__ import annotations

#: Side of the square image the reasoner is shown (SPEC section 2); Qwen2/2.5-VL also answer in its pixels.
REASONER_FRAME = 840

#: How a reasoner family writes coordinates: ``pixels`` of the image it was shown (Qwen2-VL, Qwen2.5-VL) or
#: ``relative`` to the image on a grid of :data:`RELATIVE_GRID` units (Qwen3-VL).
COORDINATES = ("pixels", "relative")

#: Side of the grid relative coordinates are on: Qwen3-VL answers with integers from 0 to 1000.
RELATIVE_GRID = 1000

#: The prompt variant of the released checkpoints (:data:`segzero.prompts.PROMPTS`).
DEFAULT_PROMPT = "seg_zero"

#: Which prompts the segmenter gets from each answer object: its box and points (``both``), one of them, or
#: (SAM 3 only) the object phrase it names, through SAM 3's text interface (``concept``).
SEGMENTER_MODES = ("both", "box", "points", "concept")

#: ``concept`` mode: SAM 3 instances scoring above this are candidates (its processor's default).
CONCEPT_SCORE_THRESHOLD = 0.3

#: ``concept`` mode: an instance is kept when at least this share of its mask lies inside the object's box.
CONCEPT_INSIDE_SHARE = 0.5

#: Value of ignore pixels in ground-truth masks (ambiguous regions, ReasonSeg): neither target nor background.
IGNORE = 255

#: Released checkpoints on the Hugging Face hub.
DEFAULT_REASONER = "Ricky06662/Seg-Zero-7B"
MULTI_OBJECT_REASONER = "Ricky06662/VisionReasoner-7B"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"

#: Seconds the up-front check of the model hub waits for an answer before calling it unreachable.
HUB_CHECK_TIMEOUT_S = 4.0

#: Decoding for evaluation: greedy, at most this many new tokens.
MAX_NEW_TOKENS = 1024

#: Value of ignore pixels in ground-truth masks (ambiguous regions, ReasonSeg): they count for
#: neither the prediction nor against it.
IGNORE = 255

#: Images above this many pixels are refused (decompression-bomb guard); 64 megapixels.
MAX_IMAGE_PIXELS = 64_000_000

#: Reward thresholds (SPEC section 4).
BOX_IOU_THRESHOLD = 0.5
BOX_L1_THRESHOLD = 10.0
POINTS_L1_THRESHOLD = 100.0
MULTI_POINT_THRESHOLD = 30.0

#: Segmenter-agreement filter for training data (SPEC section 5).
SEGMENTER_AGREEMENT_IOU = 0.6
