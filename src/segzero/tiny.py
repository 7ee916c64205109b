"""Tiny, randomly initialised models of the real architectures, built offline.

Tests and small experiments need a reasoner and a segmenter that load through the
very path users take (``from_pretrained`` on a Hugging Face folder) without the hub.
This module builds them from nothing:

- the reasoner is a ``Qwen2_5_VLForConditionalGeneration`` or a
  ``Qwen3VLForConditionalGeneration`` (``arch``) with that family's real chat template,
  Qwen's special tokens and a byte-level BPE tokenizer trained here on a small built-in
  corpus (the Seg-Zero prompts, answers and request-like English);
- the segmenter is a ``Sam2Model`` with a small Hiera backbone and its ``Sam2Processor``,
  or a SAM 3 checkpoint laid out like ``facebook/sam3`` (``sam3_video``: detector and
  tracker in one folder, so ``Sam3TrackerModel`` and ``Sam3Model`` both load from it) with
  its processor and a CLIP-style BPE tokenizer trained here.

Weights are random, so answers and masks are meaningless; shapes, token layout and
the coordinate frames are the real ones. Everything is deterministic for a given seed.

Sizes are parameters because the project also trains small reasoners of this
architecture (e.g. on a synthetic shapes dataset); :func:`count_parameters` and
:func:`folder_size` report what a setting costs.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segzero.defaults import DEFAULT_PROMPT, REASONER_FRAME
from segzero.errors import InputError
from segzero.families import reasoner_family
from segzero.prompts import PROMPTS

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, Qwen2Tokenizer

#: Qwen2.5-VL's special tokens in their real order; they take the ids right after the
#: BPE vocabulary, so their relative layout matches the released tokenizer (where
#: ``<|endoftext|>`` is 151643 and ``<|video_pad|>`` 151656).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Qwen3-VL's added tokens that are not special (decoding keeps them), in their real order after
#: :data:`QWEN_SPECIAL_TOKENS` (151657 to 151668): ``<think>`` and ``</think>`` are single tokens.
QWEN3_VL_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

#: Qwen2.5-VL's vision geometry: 14 px patches, 2x2 patches merged into one LLM token,
#: so one image token covers 28x28 pixels. Not configurable: the frame rule depends on it.
PATCH_SIZE = 14
MERGE_SIZE = 2
TOKEN_PIXELS = PATCH_SIZE * MERGE_SIZE

#: The reasoner architectures :func:`build_reasoner` builds (``config.json`` ``model_type``).
REASONER_ARCHS = ("qwen2_5_vl", "qwen3_vl")
#: The segmenter architectures :func:`make_tiny` builds.
SEGMENTER_ARCHS = ("sam2", "sam3")


@dataclass(frozen=True)
class TinyModels:
    """Folders of a tiny reasoner and segmenter built by :func:`make_tiny`.

    Attributes:
        reasoner: Hugging Face folder of the reasoner (model + processor).
        segmenter: Hugging Face folder of the segmenter (model + processor).
        frame: side in pixels of the square image the reasoner is shown (a multiple of its token size).
    """

    reasoner: Path
    segmenter: Path
    frame: int


def make_tiny(
    out_dir: str | Path,
    *,
    seed: int = 0,
    frame: int = 224,
    reasoner_arch: str = "qwen2_5_vl",
    segmenter_arch: str = "sam2",
) -> TinyModels:
    """Build a tiny reasoner into ``out_dir/"reasoner"`` and a tiny segmenter into ``out_dir/"segmenter"``.

    Args:
        out_dir: folder to create or fill.
        seed: seeds the weights of both models; same seed, same weights (the tokenizers are fixed).
        frame: side of the reasoner's square view in pixels, a multiple of its token size (28 for
            Qwen2.5-VL, 32 for Qwen3-VL; 224 suits both).
        reasoner_arch: one of :data:`REASONER_ARCHS`.
        segmenter_arch: one of :data:`SEGMENTER_ARCHS`.
    """
    if segmenter_arch not in SEGMENTER_ARCHS:
        raise InputError(
            f"Unknown segmenter architecture {segmenter_arch!r}; choose one of: {', '.join(SEGMENTER_ARCHS)}."
        )
    out = Path(out_dir)
    reasoner = build_reasoner(out / "reasoner", arch=reasoner_arch, seed=seed, frame=frame)
    build = build_segmenter if segmenter_arch == "sam2" else build_sam3
    return TinyModels(reasoner=reasoner, segmenter=build(out / "segmenter", seed=seed), frame=frame)


# --------------------------------------------------------------------------- reasoner


#: Base of the rotary frequencies of the released Qwen2.5-VL language models.
QWEN_ROPE_THETA = 1_000_000.0
#: ... and of the released Qwen3-VL ones.
QWEN3_VL_ROPE_THETA = 5_000_000.0


def build_reasoner(
    out_dir: str | Path,
    *,
    arch: str = "qwen2_5_vl",
    seed: int = 0,
    frame: int = REASONER_FRAME,
    vocab_size: int = 1024,
    corpus: Iterable[str] = (),
    hidden_size: int = 64,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden: int = 32,
    vision_heads: int = 2,
    tie_word_embeddings: bool = True,
    rope_theta: float | None = None,
    mrope_section: Sequence[int] | None = None,
    weights: bool = True,
) -> Path:
    """Build and save a random Qwen2.5-VL or Qwen3-VL reasoner with its processor; return ``out_dir``.

    The folder loads with ``AutoProcessor.from_pretrained`` and
    ``AutoModelForImageTextToText.from_pretrained`` like a released checkpoint.

    Args:
        out_dir: folder to create or fill.
        arch: ``"qwen2_5_vl"`` or ``"qwen3_vl"`` (:data:`REASONER_ARCHS`).
        seed: seeds the weights (tokenizer training is deterministic by itself).
        frame: side in pixels of the square images the reasoner is given, a multiple of the
            family's token size ``t`` (28 for Qwen2.5-VL: 14 px patches merged 2x2; 32 for
            Qwen3-VL: 16 px patches), at least ``2 t``. The image processor keeps a
            ``frame x frame`` image exactly as it is, so it becomes ``(frame/t)**2`` image
            tokens; larger images are scaled down to at most ``frame**2`` pixels.
        vocab_size: size of the byte-level BPE vocabulary before the 14 special tokens
            (at least 256, the byte alphabet; a small corpus may give fewer merges).
        corpus: extra text to train the tokenizer on, beside the built-in corpus
            (e.g. the requests of a training set).
        hidden_size / intermediate_size / num_layers / num_heads / num_kv_heads: the
            language model; ``intermediate_size`` defaults to ``4 * hidden_size``;
            ``hidden_size / num_heads`` must be even and at least 6 (multimodal RoPE).
        vision_depth / vision_hidden / vision_heads: the vision transformer;
            ``vision_hidden / vision_heads`` must be divisible by 4 (2D RoPE). Qwen3-VL's
            first vision block feeds its "deepstack" merger, as the released towers' early
            blocks do.
        tie_word_embeddings: share the input embedding and the output head, as
            Qwen2.5-VL-3B and Qwen3-VL-4B do; halves the vocabulary's share of the parameters.
        rope_theta: base of the language model's rotary frequencies (default: the released
            family's, 1e6 for Qwen2.5-VL and 5e6 for Qwen3-VL).
        mrope_section: how many of the ``head_dim / 2`` rotary frequencies go to time, image rows
            and image columns (default: the family's split: Qwen2.5-VL's 1 : 1.5 : 1.5, highest
            frequencies first; Qwen3-VL's 24 : 20 : 20, interleaved). Time may get none with
            Qwen2.5-VL: a still image's tokens all share one time position, so time frequencies
            say nothing about where an image token is.
        weights: False saves everything but the weights (config, generation config, processor): enough for
            vLLM's ``load_format="dummy"`` and ``from_config``, at sizes whose weights would not fit a disk.
    """
    if arch not in REASONER_ARCHS:
        raise InputError(f"Unknown reasoner architecture {arch!r}; choose one of: {', '.join(REASONER_ARCHS)}.")
    qwen3 = arch == "qwen3_vl"
    token = reasoner_family(arch, "tiny").token_pixels
    if frame % token or frame < 2 * token:
        raise InputError(f"The frame must be a multiple of {token} px, at least {2 * token}; got {frame}.")
    head_dim, rest = divmod(hidden_size, num_heads)
    if rest or head_dim % 2 or head_dim < 6 or num_heads % num_kv_heads:
        raise InputError(
            "hidden_size/num_heads must be an even integer of at least 6 and num_heads a multiple of"
            f" num_kv_heads; got hidden_size={hidden_size}, num_heads={num_heads},"
            f" num_kv_heads={num_kv_heads}."
        )
    half = head_dim // 2
    mrope = list(mrope_section) if mrope_section is not None else _mrope_section(head_dim, interleaved=qwen3)
    valid = len(mrope) == 3 and sum(mrope) == half and min(mrope) >= 0 and min(mrope[1:]) >= 1
    if qwen3:  # interleaved: rows take frequencies 1, 4, 7, ... and columns 2, 5, 8, ... (of head_dim / 2)
        valid = valid and 3 * max(mrope[1:]) <= half
    if not valid:
        raise InputError(
            "mrope_section must be three counts (time, rows, columns; rows and columns at least 1) adding up"
            f" to head_dim/2 = {half}"
            + (", rows and columns each at most a third of it" if qwen3 else "")
            + f"; got {mrope}."
        )
    if vision_hidden % vision_heads or (vision_hidden // vision_heads) % 4:
        raise InputError(
            f"vision_hidden/vision_heads must be a multiple of 4; got {vision_hidden}/{vision_heads}."
        )
    import torch
    from transformers import GenerationConfig

    out = Path(out_dir)
    extra = QWEN3_VL_ADDED_TOKENS if qwen3 else ()
    corpus = itertools.chain(corpus, _relative_corpus() if qwen3 else ())
    tokenizer = build_tokenizer(vocab_size=vocab_size, corpus=corpus, added_tokens=extra)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": float(rope_theta or (QWEN3_VL_ROPE_THETA if qwen3 else QWEN_ROPE_THETA)),
            "mrope_section": mrope,
            **({"mrope_interleaved": True} if qwen3 else {}),
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        **({"head_dim": head_dim} if qwen3 else {}),
    }
    vision_config = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": vision_heads,
        "out_hidden_size": hidden_size,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": 2,
    }
    if qwen3:
        vision_config.update(
            patch_size=token // MERGE_SIZE,
            # A learnt 8x8 position grid, resampled to each image's patch grid (the released one is 48x48).
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        )
    else:
        vision_config.update(
            patch_size=PATCH_SIZE,
            # 112 px attention windows and full attention in every 8th block, as in the real tower;
            # the last block always attends fully so that a shallow tower still sees the whole image.
            window_size=112,
            fullatt_block_indexes=[i for i in range(vision_depth) if i % 8 == 7 or i == vision_depth - 1],
        )
    config_class, model_class, processor_class, image_processor, video_processor = _reasoner_classes(arch, frame)
    config = config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        # Qwen stops on either end marker; <|im_end|> closes an assistant turn.
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    if weights:
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(seed)
            model = model_class(config).eval()
        model.generation_config = generation_config
        model.save_pretrained(out)
    else:
        config.architectures = [model_class.__name__]
        config.save_pretrained(out)
        generation_config.save_pretrained(out)
    processor = processor_class(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        chat_template=chat_template(arch),
    )
    processor.save_pretrained(out)
    return out


def _reasoner_classes(arch: str, frame: int):
    """Config class, model class, processor class, image processor and video processor of ``arch``.

    Qwen's smart_resize rounds each side to a multiple of the token size and rescales only when the
    area leaves [min_pixels, max_pixels]: a frame x frame image passes through untouched.
    """
    import transformers

    token = reasoner_family(arch, "tiny").token_pixels
    if arch == "qwen3_vl":
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        image_processor = transformers.Qwen2VLImageProcessor(
            patch_size=token // MERGE_SIZE, merge_size=MERGE_SIZE, min_pixels=(2 * token) ** 2,
            max_pixels=frame * frame, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        )  # fmt: skip
        return (transformers.Qwen3VLConfig, transformers.Qwen3VLForConditionalGeneration,
                transformers.Qwen3VLProcessor, image_processor, Qwen3VLVideoProcessor())  # fmt: skip
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=(2 * token) ** 2, max_pixels=frame * frame)
    # Videos are never used, but the processor cannot be built without a video processor.
    return (transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration,
            transformers.Qwen2_5_VLProcessor, image_processor, transformers.Qwen2VLVideoProcessor())  # fmt: skip


def _mrope_section(head_dim: int, *, interleaved: bool = False) -> list[int]:
    """Split the rotary half-dimension into (time, height, width): like Qwen2.5-VL's [16, 24, 24] of 64, or
    (interleaved) like Qwen3-VL's [24, 20, 20] of 64."""
    half = head_dim // 2
    spatial = max(1, half * 5 // 16) if interleaved else (half - half // 4) // 2
    return [half - 2 * spatial, spatial, spatial]


def chat_template(arch: str) -> str:
    """The released chat template (jinja) of ``arch``, as shipped inside the installed ``trl``.

    Read from the file without importing ``trl`` (slow to import); each template is the released
    model's, byte for byte (Qwen2.5-VL's opens with a default system turn, Qwen3-VL's does not), so
    prompts render exactly as for the real reasoner.
    """
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The tiny reasoner takes its chat template from the 'trl' package, "
            "which is not installed: pip install 'segzero[train]'."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / f"{arch}.jinja"
    return path.read_text(encoding="utf-8")


def build_tokenizer(
    *, vocab_size: int = 1024, corpus: Iterable[str] = (), added_tokens: Sequence[str] = ()
) -> Qwen2Tokenizer:
    """Train a byte-level BPE tokenizer with Qwen2's pre-tokenisation and wrap it as ``Qwen2Tokenizer``.

    The BPE part has at most ``vocab_size`` entries (ids ``0..n-1``); the
    :data:`QWEN_SPECIAL_TOKENS` follow in order, then ``added_tokens`` (single tokens that decoding
    keeps, e.g. :data:`QWEN3_VL_ADDED_TOKENS`). eos is ``<|im_end|>``, pad ``<|endoftext|>``, as in
    Qwen2.5-VL-Instruct and Qwen3-VL-Instruct. Byte-level, so any text round-trips.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    if vocab_size < 256:
        raise InputError(f"vocab_size must be at least 256 (the byte alphabet); got {vocab_size}.")
    learnt_vocab, merges = _learn_qwen_bpe(vocab_size, tuple(corpus))
    vocab = dict(learnt_vocab)
    for token in (*QWEN_SPECIAL_TOKENS, *added_tokens):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in merges],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        model_max_length=32768,
    )
    if added_tokens:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in added_tokens])
    return tokenizer


@functools.lru_cache(maxsize=4)
def _learn_qwen_bpe(vocab_size: int, corpus: tuple[str, ...]) -> tuple[dict[str, int], list]:
    """The learnt vocabulary and merges (deterministic; cached, as several tiny models share them)."""
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    # Borrow normaliser and pre-tokeniser from transformers' own Qwen2Tokenizer so that the
    # merges learnt here are applied to text split exactly as they were when learnt.
    qwen_pipeline = Qwen2Tokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = qwen_pipeline.normalizer
    bpe.pre_tokenizer = qwen_pipeline.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(itertools.chain(_builtin_corpus(), corpus), trainer=trainer)
    learnt = json.loads(bpe.to_str())["model"]
    return learnt["vocab"], learnt["merges"]


_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray")
_SHAPES = ("circle", "square", "triangle", "rectangle", "star", "ellipse", "disc", "cross", "ring", "hexagon")
_OBJECTS = tuple(
    (
        "person man woman child girl boy player dog cat horse bird cow sheep elephant giraffe zebra bear "
        "car bus truck bicycle motorcycle train boat plane chair table sofa couch bed bench lamp shelf "
        "cup mug glass bottle bowl plate knife fork spoon bread cake pizza banana apple sandwich carrot "
        "broccoli donut umbrella bag backpack suitcase phone laptop keyboard book clock vase plant flower "
        "tree window door shirt hat shoe jacket ball kite skateboard surfboard racket sink oven fridge "
        "microwave television remote scissors toothbrush pillow blanket"
    ).split()
)
_SIZES = ("small", "large", "big", "tiny", "tall", "short", "largest", "smallest", "biggest")
_PLACES = (
    "on the left",
    "on the right",
    "at the top",
    "at the bottom",
    "in the middle",
    "in the centre",
    "in front",
    "behind the others",
    "next to the door",
    "above the table",
    "below the window",
    "closest to the camera",
    "farthest from the camera",
)
_REQUESTS = (
    "What can I use to cut the bread?",
    "the food that gives sustained energy",
    "Which object is used for sitting?",
    "the person holding an umbrella",
    "something that can hold water",
    "the animal that is sleeping",
    "where should I put my keys",
    "the thing you would wear when it rains",
    "the man in the red shirt who is looking at his phone",
    "Find the shape that has three corners.",
    "the only object that is not round",
    "If I want to keep my food cold, which appliance should I open?",
    "the most likely place for a child to play",
    "the vehicle that can carry the most people",
    "what would you use to tell the time",
    "the fruit with the highest amount of vitamin C",
)
_THOUGHTS = (
    "The image shows several objects.",
    "I compare the colours, sizes and positions of the objects.",
    "The {c} {s} is {p}, so it matches the request.",
    "The other objects are smaller, so the {z} one is the {c} {s}.",
    "It is {c} and {z}, which is what was asked for.",
    "There is only one {s} in the image, and it is {p}.",
)


#: The prompt variants in the built-in corpus: the five the first tiny tokenizers learnt from, so a
#: Qwen2.5-VL built today gets the same tokenizer as the shipped ShapeWorld models.
_CORPUS_PROMPTS = (DEFAULT_PROMPT, "multi_object", "no_think", "box_only", "points_only")


def _corpus_rows() -> list[tuple[str, str, str, str]]:
    """``(size, colour, noun, place)`` rows that the corpora build questions and answers from."""
    nouns = _SHAPES + _OBJECTS
    return list(zip(itertools.cycle(_SIZES), itertools.cycle(_COLOURS), nouns * 3, itertools.cycle(_PLACES)))


def _builtin_corpus() -> Iterator[str]:
    """Text the tokenizer learns its merges from: prompts, answers in both JSON forms, requests.

    Fixed text (no randomness), so every build learns the same merges.
    """
    rows = _corpus_rows()
    questions = [f"the {z} {c} {s} {p}" for z, c, s, p in rows]
    for q in itertools.chain(questions[:: len(_SHAPES)], _REQUESTS):
        for name in _CORPUS_PROMPTS:
            yield PROMPTS[name].render(q)
    yield from questions
    for i, (z, c, s, p) in enumerate(rows):
        x1, y1 = (37 * i) % 700, (53 * i) % 700
        x2, y2 = x1 + 20 + (11 * i) % 140, y1 + 20 + (7 * i) % 140
        thought = " ".join(t.format(c=c, s=s, p=p, z=z) for t in _THOUGHTS[i % 4 : i % 4 + 3])
        yield (
            f"<think> {thought} </think><answer>{{'bbox': [{x1},{y1},{x2},{y2}], "
            f"'points_1': [{(x1 + x2) // 2},{(y1 + y2) // 2}], 'points_2': [{x1 + 9},{y2 - 9}]}}</answer>"
        )
        yield (
            f'<think> {thought} </think>\n<answer>[{{"bbox_2d": [{x1},{y1},{x2},{y2}], '
            f'"point_2d": [{(x1 + x2) // 2},{(y1 + y2) // 2}]}}]</answer>'
        )
    yield "system\nYou are a helpful assistant.\nuser\nassistant\n"


def _relative_corpus() -> Iterator[str]:
    """What a Qwen3-VL tokenizer learns besides: every prompt variant worded for the 0-1000 grid, and
    answers on that grid that name their object (the ``concept`` form)."""
    rows = _corpus_rows()
    for z, c, s, p in rows[:: len(_SHAPES)]:
        for variant in PROMPTS.values():
            yield variant.render(f"the {z} {c} {s} {p}", "relative")
    for i, (_, c, s, _) in enumerate(rows):
        x1, y1 = (41 * i) % 850, (59 * i) % 850
        x2, y2 = x1 + 30 + (13 * i) % 150, y1 + 30 + (9 * i) % 150
        yield (
            f"<answer>{{'bbox': [{x1},{y1},{x2},{y2}], 'points_1': [{(x1 + x2) // 2},{(y1 + y2) // 2}], "
            f"'points_2': [{x1 + 9},{y2 - 9}], 'label': '{c} {s}'}}</answer>"
        )


# --------------------------------------------------------------------------- segmenter


def build_segmenter(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 64,
    hidden_size: int = 32,
    stage_dims: tuple[int, int, int, int] = (8, 16, 32, 64),
    stage_heads: tuple[int, int, int, int] = (1, 1, 2, 2),
    blocks_per_stage: tuple[int, int, int, int] = (1, 1, 2, 1),
    window_size_per_stage: tuple[int, int, int, int] = (8, 4, 4, 2),
    global_attention_blocks: tuple[int, ...] = (3,),
) -> Path:
    """Build and save a random SAM2 (``Sam2Model`` + ``Sam2Processor``); return ``out_dir``.

    The Hiera backbone has four stages (by default 1, 1, 2, 1 blocks; :data:`SAM2_LARGE` gives
    SAM2-large's) at strides 4, 8, 16 and 32 of
    the ``image_size x image_size`` input; as in SAM2, the FPN keeps the three finest
    (``image_size/4``, ``/8``, ``/16``). The processor resizes an image of any size to the
    square input and maps boxes and points given in original ``(x, y)`` pixels into it;
    ``pred_masks`` are ``image_size/4`` square logits, ``post_process_masks`` scales them
    back to the original ``(H, W)``. The default 64 keeps tests fast (16x16 masks); 32 is
    the smallest that works, real SAM2 uses 1024.

    Args:
        out_dir: folder to create or fill.
        seed: seeds the weights.
        image_size: side of the model's square input, a multiple of 32.
        hidden_size: width of the FPN, prompt encoder and mask decoder (a multiple of 8).
        stage_dims / stage_heads: Hiera width and attention heads per stage.
        blocks_per_stage / window_size_per_stage / global_attention_blocks: Hiera depth per stage, attention
            window per stage, and the blocks (counted over all stages) that attend globally.
    """
    if image_size % 32:
        raise InputError(f"The segmenter's image_size must be a multiple of 32; got {image_size}.")
    if hidden_size % 8:
        raise InputError(f"The segmenter's hidden_size must be a multiple of 8; got {hidden_size}.")
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    fine = image_size // 4
    config = Sam2Config(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": stage_dims[0],
                "num_attention_heads": stage_heads[0],
                "image_size": [image_size, image_size],
                # By default one global-attention block after the windowed one at stride 16, the stage the
                # mask decoder attends to (as SAM2's global blocks sit inside its third stage). A global
                # block may not open a pooling stage: its window size is halved by the query stride.
                "blocks_per_stage": list(blocks_per_stage),
                "embed_dim_per_stage": list(stage_dims),
                "num_attention_heads_per_stage": list(stage_heads),
                # The first window must tile the stride-4 grid exactly (windowed positional embedding).
                "window_size_per_stage": list(window_size_per_stage),
                "global_attention_blocks": list(global_attention_blocks),
            },
            "backbone_channel_list": list(reversed(stage_dims)),
            "backbone_feature_sizes": [[fine, fine], [fine // 2, fine // 2], [fine // 4, fine // 4]],
            "fpn_hidden_size": hidden_size,
        },
        prompt_encoder_config={"hidden_size": hidden_size, "image_size": image_size, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": hidden_size,
            "mlp_dim": 4 * hidden_size,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": hidden_size,
        },
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2Model(config).eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    processor = Sam2Processor(
        image_processor=Sam2ImageProcessor(
            size={"height": image_size, "width": image_size},
            mask_size={"height": fine, "width": fine},
        )
    )
    processor.save_pretrained(out)
    return out


#: :func:`build_segmenter`'s arguments for SAM2.1-hiera-large's shapes (1024 px input; random weights).
SAM2_LARGE = dict(
    image_size=1024,
    hidden_size=256,
    stage_dims=(144, 288, 576, 1152),
    stage_heads=(2, 4, 8, 16),
    blocks_per_stage=(2, 6, 36, 4),
    window_size_per_stage=(8, 4, 16, 8),
    global_attention_blocks=(23, 33, 43),
)

#: SAM 3's vision transformer patch size (the released one: 14 px patches of a 1008 px input).
SAM3_PATCH_SIZE = 14


def build_sam3(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 112,
    hidden_size: int = 32,
    vit_hidden: int = 32,
    vit_layers: int = 2,
    text_vocab_size: int = 512,
    num_queries: int = 8,
) -> Path:
    """Build and save a random SAM 3 laid out like ``facebook/sam3``; return ``out_dir``.

    The folder holds one ``sam3_video`` checkpoint: the detector (``detector_model.*``: ViT backbone,
    FPN, CLIP text encoder, DETR encoder and decoder, mask decoder) and the tracker (``tracker_model.*``,
    with its own FPN ``tracker_neck.*`` on the detector's backbone), in the released key names, with a
    ``Sam3Processor`` (image processor + CLIP tokenizer trained here). As with the release,
    ``Sam3TrackerModel``/``Sam3TrackerProcessor`` load the box-and-point interface from it and
    ``Sam3Model``/``Sam3Processor`` the text interface.

    Args:
        out_dir: folder to create or fill.
        seed: seeds the weights.
        image_size: side of the model's square input, a multiple of 56 (14 px patches, 4 windows a side);
            the FPN levels are ``image_size/14`` times 4, 2 and 1, and masks ``4 * image_size / 14`` square
            (the released 1008 gives 288).
        hidden_size: width of the FPN, prompt encoders, DETR and mask decoders (a multiple of 8).
        vit_hidden / vit_layers: the vision transformer (the last layer attends globally, the others
            in windows, as the released one alternates).
        text_vocab_size: size of the text tokenizer's BPE vocabulary (at least 512: bytes with and
            without the end-of-word mark).
        num_queries: DETR object queries (the released 200).
    """
    if image_size % (4 * SAM3_PATCH_SIZE):
        raise InputError(f"The SAM 3 image_size must be a multiple of {4 * SAM3_PATCH_SIZE}; got {image_size}.")
    if hidden_size % 8 or vit_hidden % 8:
        raise InputError(f"hidden_size and vit_hidden must be multiples of 8; got {hidden_size}, {vit_hidden}.")
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3ImageProcessor, Sam3Processor, Sam3VideoConfig, Sam3VideoModel

    grid = image_size // SAM3_PATCH_SIZE
    tokenizer = build_clip_tokenizer(vocab_size=text_vocab_size)
    small = {"hidden_size": hidden_size, "num_attention_heads": 2, "intermediate_size": 2 * hidden_size}
    vision = {
        "model_type": "sam3_vision_model",
        "backbone_config": {
            "model_type": "sam3_vit_model",
            "hidden_size": vit_hidden,
            "intermediate_size": 2 * vit_hidden,
            "num_hidden_layers": vit_layers,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": SAM3_PATCH_SIZE,
            "window_size": grid // 4 * 2 if grid >= 8 else grid,
            "global_attn_indexes": [vit_layers - 1],
            "pretrain_image_size": image_size,
        },
        "fpn_hidden_size": hidden_size,
        "backbone_feature_sizes": [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    }
    detector = {
        "model_type": "sam3",
        "vision_config": vision,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "projection_dim": hidden_size,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,  # Sam3Processor pads every phrase to 32 tokens
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        "geometry_encoder_config": {**small, "num_layers": 1},
        "detr_encoder_config": {**small, "num_layers": 1},
        "detr_decoder_config": {**small, "num_layers": 1, "num_queries": num_queries},
        "mask_decoder_config": {"hidden_size": hidden_size, "num_attention_heads": 2},
    }
    tracker = {
        "model_type": "sam3_tracker_video",
        "vision_config": vision,
        "image_size": image_size,
        "prompt_encoder_config": {"hidden_size": hidden_size, "image_size": image_size, "patch_size": SAM3_PATCH_SIZE},
        "mask_decoder_config": {
            "hidden_size": hidden_size, "mlp_dim": 2 * hidden_size, "num_attention_heads": 2,
            "iou_head_hidden_dim": hidden_size,
        },
        "memory_attention_hidden_size": hidden_size,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 2 * hidden_size,
        "memory_attention_rope_feat_sizes": [grid, grid],
    }  # fmt: skip
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3VideoModel(config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    # The module names are the release's key names; save_pretrained would add a second tracker_model.
    # prefix (Sam3VideoModel's own renaming), which neither Sam3TrackerModel nor Sam3Model reads.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(
            size={"height": image_size, "width": image_size},
            mask_size={"height": 4 * grid, "width": 4 * grid},
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(out)
    return out


def build_clip_tokenizer(*, vocab_size: int = 512) -> CLIPTokenizer:
    """Train a CLIP-style BPE tokenizer (lower-cased words, ``</w>`` word ends) for SAM 3's text encoder.

    Every byte, with and without the end-of-word mark, is in the vocabulary (ids ``0..511``), so any
    text encodes; merges learnt from object phrases follow, then ``<|startoftext|>`` and
    ``<|endoftext|>``, as in CLIP's layout.
    """
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    if vocab_size < 512:
        raise InputError(f"The text vocab_size must be at least 512 (bytes with and without </w>); got {vocab_size}.")
    clip_pipeline = CLIPTokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = clip_pipeline.normalizer
    bpe.pre_tokenizer = clip_pipeline.pre_tokenizer
    alphabet = sorted(ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, initial_alphabet=alphabet, end_of_word_suffix="</w>",
        show_progress=False,
    )  # fmt: skip
    phrases = [f"{z} {c} {s}" for z, c, s, _ in _corpus_rows()] + list(_OBJECTS + _SHAPES)
    bpe.train_from_iterator(phrases, trainer=trainer)
    learnt = json.loads(bpe.to_str())["model"]
    vocab = {token: i for i, token in enumerate([*alphabet, *(a + "</w>" for a in alphabet)])}
    for token in learnt["vocab"]:
        vocab.setdefault(token, len(vocab))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[tuple(pair) for pair in learnt["merges"]])


# --------------------------------------------------------------------------- sizes


def count_parameters(model_dir: str | Path) -> int:
    """Number of parameters stored in a saved folder's safetensors files (tied weights counted once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def folder_size(model_dir: str | Path) -> int:
    """Bytes on disk of all files in a saved folder."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- taught reasoners

#: What :func:`teach` teaches by default, and the frame it teaches it in: a parseable answer on the 112 view.
TAUGHT_ANSWER = (
    "<think>it is on the left</think><answer>{'bbox': [20,30,90,100], 'points_1': [40,50], 'points_2': [60,70]}"
    "</answer>"
)
TAUGHT_FRAME = 112


def teach(reasoner_dir: str | Path, answer: str = TAUGHT_ANSWER, frame: int = TAUGHT_FRAME) -> None:
    """Teach the tiny reasoner in ``reasoner_dir``, by real gradient steps, to answer ``answer`` whatever it
    is asked, and save it there.

    Random tiny reasoners answer garbage; a taught one makes ``generate`` produce a parseable answer, so the
    whole path (parse -> frame mapping -> segmenter -> mask) runs without faking any output: the tests'
    ``taught_models`` and the engines benchmark use it. About a minute on two CPU cores.

    Raises:
        RuntimeError: the reasoner did not learn the answer word for word within 160 steps.
    """
    import numpy as np
    import torch
    from PIL import Image

    from segzero.reasoner import Reasoner, reasoner_image

    torch.manual_seed(0)
    r = Reasoner.from_pretrained(str(reasoner_dir), device="cpu", frame=frame)
    proc, eos = r.processor, r.processor.tokenizer.eos_token
    rng = np.random.default_rng(0)

    def noise(h, w):
        return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))

    # A left-padded batch of two prompts of different lengths, so batched generation answers alike.
    images = [reasoner_image(noise(48, 64), frame), reasoner_image(noise(30, 20), frame)]
    prompts = [r.chat_text("the cup"), r.chat_text("the small red knife at the far left of the table")]
    full = proc(text=[p + answer + eos for p in prompts], images=images, padding=True, return_tensors="pt")
    labels = full["input_ids"].clone()
    for row, (p, img) in enumerate(zip(prompts, images)):
        prompt_len = proc(text=[p], images=[img], return_tensors="pt")["input_ids"].shape[1]
        padding = int((full["attention_mask"][row] == 0).sum())
        labels[row, : padding + prompt_len] = -100
    opt = torch.optim.AdamW(r.model.parameters(), lr=4e-3)
    for _ in range(8):  # until it answers word for word (about 40 steps), at most 160
        r.model.train()
        for _ in range(20):
            loss = r.model(**full, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        r.model.eval()
        budget = len(proc.tokenizer(answer, add_special_tokens=False)["input_ids"]) + 4
        check = r.generate([noise(90, 70), noise(20, 30)], ["the knife", "a dog"], max_new_tokens=budget)
        if check == [answer] * 2:
            break
    else:
        raise RuntimeError("the tiny reasoner did not learn the taught answer")
    r.model.save_pretrained(reasoner_dir)
