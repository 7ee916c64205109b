"""Project-wide defaults, defined once and imported everywhere else."""

from __future__ import annotations

#: Side of the square frame the reasoner sees and answers in (SPEC section 2).
REASONER_FRAME = 840

#: The prompt variant of the released checkpoints (:data:`segzero.prompts.PROMPTS`).
DEFAULT_PROMPT = "seg_zero"

#: Which positional prompts the segmenter gets from each answer object.
SEGMENTER_MODES = ("both", "box", "points")

#: Released checkpoints on the Hugging Face hub.
DEFAULT_REASONER = "Ricky06662/Seg-Zero-7B"
MULTI_OBJECT_REASONER = "Ricky06662/VisionReasoner-7B"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
#: The segmenter the reference release evaluated with: SAM 2.0, not 2.1 (SPEC section 9.1).
REFERENCE_SEGMENTER = "facebook/sam2-hiera-large"

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
