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

#: Released checkpoints on the Hugging Face hub.
DEFAULT_REASONER = "Ricky06662/Seg-Zero-7B"
MULTI_OBJECT_REASONER = "Ricky06662/VisionReasoner-7B"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
#: The segmenter the reference release evaluated with: SAM 2.0, not 2.1 (SPEC section 9.1).
REFERENCE_SEGMENTER = "facebook/sam2-hiera-large"

#: Seconds the up-front check of the model hub waits for an answer before calling it unreachable.
HUB_CHECK_TIMEOUT_S = 4.0

#: Decoding for evaluation: greedy, at most this many new tokens.
MAX_NEW_TOKENS = 1024

#: Where the reasoner runs: transformers' ``generate`` in this process, vLLM in this process, or any
#: OpenAI-compatible chat-completions server (``vllm serve``, SGLang, ``transformers serve``).
ENGINES = ("transformers", "vllm", "openai")

#: openai engine: requests sent to the server at once.
MAX_IN_FLIGHT = 32

#: openai engine: seconds one request may take before it is tried again, and how many times it is tried
#: again (after 429, 5xx, timeouts and lost connections), waiting ``ENGINE_BACKOFF_S``, then twice that, ...
ENGINE_TIMEOUT_S = 600.0
ENGINE_RETRIES = 4
ENGINE_BACKOFF_S = 1.0

#: Streaming engines (vllm, openai): requests handed over ahead of the results being collected, so the engine
#: schedules many at once and never waits for a batch's slowest request.
STREAM_WINDOW = 256

#: A runaway completion (:mod:`segzero.runaway`) ends in at least ``RUNAWAY_MIN_CHARS`` characters that are
#: whitespace, or one unit of at most ``RUNAWAY_MAX_PERIOD`` characters repeated at least
#: ``RUNAWAY_MIN_REPEATS`` times. ``--stop-runaway`` looks every ``RUNAWAY_CHECK_EVERY`` new tokens.
RUNAWAY_MIN_CHARS = 64
RUNAWAY_MIN_REPEATS = 8
RUNAWAY_MAX_PERIOD = 100
RUNAWAY_CHECK_EVERY = 8

#: vllm engine: share of the GPU's memory vLLM may take, leaving room for the segmenter on the same GPU.
VLLM_GPU_MEMORY_UTILIZATION = 0.8

#: Value of ignore pixels in ground-truth masks (ambiguous regions, ReasonSeg): they count for
#: neither the prediction nor against it.
IGNORE = 255

#: ``Sample.extra`` key (and result-record ``extra`` key) flagging a request that matches nothing: such a
#: sample has no boxes, no points and an all-zero mask of the image's size (gRefCOCO's no-target expressions).
NO_TARGET_KEY = "no_target"

#: Images above this many pixels are refused (decompression-bomb guard); 64 megapixels.
MAX_IMAGE_PIXELS = 64_000_000

#: Reward thresholds (SPEC section 4).
BOX_IOU_THRESHOLD = 0.5
BOX_L1_THRESHOLD = 10.0
POINTS_L1_THRESHOLD = 100.0
MULTI_POINT_THRESHOLD = 30.0

#: Segmenter-agreement filter for training data (SPEC section 5).
SEGMENTER_AGREEMENT_IOU = 0.6
