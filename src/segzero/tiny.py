"""Tiny, randomly initialised models of the real architectures, built offline.

Tests and small experiments need a reasoner and a segmenter that load through the
very path users take (``from_pretrained`` on a Hugging Face folder) without the hub.
This module builds them from nothing:

- the reasoner is a ``Qwen2_5_VLForConditionalGeneration`` with the real Qwen2.5-VL
  chat template, Qwen's special tokens and a byte-level BPE tokenizer trained here on
  a small built-in corpus (the Seg-Zero prompts, answers and request-like English);
- the segmenter is a ``Sam2Model`` with a small Hiera backbone and its ``Sam2Processor``.

Weights are random, so answers and masks are meaningless; shapes, token layout and
the coordinate frames are the real ones. Everything is deterministic for a given seed.

Sizes are parameters because the project also trains small reasoners of this
architecture (e.g. on a synthetic shapes dataset); :func:`count_parameters` and
:func:`folder_size` report what a setting costs.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segzero.defaults import REASONER_FRAME
from segzero.errors import InputError
from segzero.prompts import PROMPTS

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer

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

#: Qwen2.5-VL's vision geometry: 14 px patches, 2x2 patches merged into one LLM token,
#: so one image token covers 28x28 pixels. Not configurable: the frame rule depends on it.
PATCH_SIZE = 14
MERGE_SIZE = 2
TOKEN_PIXELS = PATCH_SIZE * MERGE_SIZE


@dataclass(frozen=True)
class TinyModels:
    """Folders of a tiny reasoner and segmenter built by :func:`make_tiny`.

    Attributes:
        reasoner: Hugging Face folder of the Qwen2.5-VL reasoner (model + processor).
        segmenter: Hugging Face folder of the SAM2 segmenter (model + processor).
        frame: side in pixels of the square frame the reasoner sees (a multiple of 28).
    """

    reasoner: Path
    segmenter: Path
    frame: int


def make_tiny(out_dir: str | Path, *, seed: int = 0, frame: int = 224) -> TinyModels:
    """Build a tiny reasoner into ``out_dir/"reasoner"`` and a tiny segmenter into ``out_dir/"segmenter"``.

    Args:
        out_dir: folder to create or fill.
        seed: seeds the weights of both models; same seed, same weights (the tokenizer is fixed).
        frame: side of the reasoner's square frame in pixels, a multiple of 28.
    """
    out = Path(out_dir)
    return TinyModels(
        reasoner=build_reasoner(out / "reasoner", seed=seed, frame=frame),
        segmenter=build_segmenter(out / "segmenter", seed=seed),
        frame=frame,
    )


# --------------------------------------------------------------------------- reasoner


#: Base of the rotary frequencies of the released Qwen2.5-VL language models.
QWEN_ROPE_THETA = 1_000_000.0


def build_reasoner(
    out_dir: str | Path,
    *,
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
    rope_theta: float = QWEN_ROPE_THETA,
    mrope_section: Sequence[int] | None = None,
) -> Path:
    """Build and save a random Qwen2.5-VL reasoner with its processor; return ``out_dir``.

    The folder loads with ``AutoProcessor.from_pretrained`` and
    ``AutoModelForImageTextToText.from_pretrained`` like a released checkpoint.

    Args:
        out_dir: folder to create or fill.
        seed: seeds the weights (tokenizer training is deterministic by itself).
        frame: side in pixels of the square images the reasoner is given (a multiple of
            28, at least 56). The image processor keeps a ``frame x frame`` image exactly
            as it is, so it becomes ``(frame/28)**2`` image tokens; larger images are
            scaled down to at most ``frame**2`` pixels.
        vocab_size: size of the byte-level BPE vocabulary before the 14 special tokens
            (at least 256, the byte alphabet; a small corpus may give fewer merges).
        corpus: extra text to train the tokenizer on, beside the built-in corpus
            (e.g. the requests of a training set).
        hidden_size / intermediate_size / num_layers / num_heads / num_kv_heads: the
            language model; ``intermediate_size`` defaults to ``4 * hidden_size``;
            ``hidden_size / num_heads`` must be even and at least 6 (multimodal RoPE).
        vision_depth / vision_hidden / vision_heads: the vision transformer;
            ``vision_hidden / vision_heads`` must be divisible by 4 (2D RoPE).
        tie_word_embeddings: share the input embedding and the output head, as
            Qwen2.5-VL-3B does; halves the vocabulary's share of the parameters.
        rope_theta: base of the language model's rotary frequencies (the released 1e6 by default).
        mrope_section: how many of the ``head_dim / 2`` rotary frequencies go to time, image rows
            and image columns, highest frequencies first (default: Qwen's 1 : 1.5 : 1.5 split).
            Time may get none: a still image's tokens all share one time position, so time
            frequencies say nothing about where an image token is.
    """
    if frame % TOKEN_PIXELS or frame < 2 * TOKEN_PIXELS:
        raise InputError(f"The frame must be a multiple of {TOKEN_PIXELS} px, at least 56; got {frame}.")
    head_dim, rest = divmod(hidden_size, num_heads)
    if rest or head_dim % 2 or head_dim < 6 or num_heads % num_kv_heads:
        raise InputError(
            "hidden_size/num_heads must be an even integer of at least 6 and num_heads a multiple of"
            f" num_kv_heads; got hidden_size={hidden_size}, num_heads={num_heads},"
            f" num_kv_heads={num_kv_heads}."
        )
    mrope = list(mrope_section) if mrope_section is not None else _mrope_section(head_dim)
    if len(mrope) != 3 or sum(mrope) != head_dim // 2 or min(mrope) < 0 or min(mrope[1:]) < 1:
        raise InputError(
            "mrope_section must be three counts (time, rows, columns; rows and columns at least 1) adding up"
            f" to head_dim/2 = {head_dim // 2}; got {mrope}."
        )
    if vision_hidden % vision_heads or (vision_hidden // vision_heads) % 4:
        raise InputError(
            f"vision_hidden/vision_heads must be a multiple of 4; got {vision_hidden}/{vision_heads}."
        )
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    tokenizer = build_tokenizer(vocab_size=vocab_size, corpus=corpus)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size or 4 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": float(rope_theta),
                "mrope_section": mrope,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            # 112 px attention windows and full attention in every 8th block, as in the real tower;
            # the last block always attends fully so that a shallow tower still sees the whole image.
            "window_size": 112,
            "fullatt_block_indexes": [i for i in range(vision_depth) if i % 8 == 7 or i == vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        # Qwen stops on either end marker; <|im_end|> closes an assistant turn.
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)

    processor = Qwen2_5_VLProcessor(
        # Qwen's smart_resize rounds each side to a multiple of 28 and rescales only when the
        # area leaves [min_pixels, max_pixels]: a frame x frame image passes through untouched.
        image_processor=Qwen2VLImageProcessor(min_pixels=(2 * TOKEN_PIXELS) ** 2, max_pixels=frame * frame),
        # Videos are never used, but the processor cannot be built without a video processor.
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=qwen2_5_vl_chat_template(),
    )
    processor.save_pretrained(out)
    return out


def _mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension into (time, height, width) like Qwen's [16, 24, 24] of 64."""
    half = head_dim // 2
    spatial = (half - half // 4) // 2
    return [half - 2 * spatial, spatial, spatial]


def qwen2_5_vl_chat_template() -> str:
    """Return Qwen2.5-VL's own chat template (jinja), as shipped inside the installed ``trl``.

    Read from the file without importing ``trl`` (slow to import); the template is the
    released model's, byte for byte, so prompts render exactly as for the real reasoner.
    """
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The tiny reasoner takes the Qwen2.5-VL chat template from the 'trl' package, "
            "which is not installed: pip install 'segzero[train]'."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / "qwen2_5_vl.jinja"
    return path.read_text(encoding="utf-8")


def build_tokenizer(*, vocab_size: int = 1024, corpus: Iterable[str] = ()) -> Qwen2Tokenizer:
    """Train a byte-level BPE tokenizer with Qwen2's pre-tokenisation and wrap it as ``Qwen2Tokenizer``.

    The BPE part has at most ``vocab_size`` entries (ids ``0..n-1``); the
    :data:`QWEN_SPECIAL_TOKENS` follow in order. eos is ``<|im_end|>``, pad
    ``<|endoftext|>``, as in Qwen2.5-VL-Instruct. Byte-level, so any text round-trips.
    """
    from tokenizers import Tokenizer, models, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    if vocab_size < 256:
        raise InputError(f"vocab_size must be at least 256 (the byte alphabet); got {vocab_size}.")
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
    vocab = dict(learnt["vocab"])
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in learnt["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        model_max_length=32768,
    )


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


def _builtin_corpus() -> Iterator[str]:
    """Text the tokenizer learns its merges from: prompts, answers in both JSON forms, requests.

    Fixed text (no randomness), so every build learns the same merges.
    """
    nouns = _SHAPES + _OBJECTS
    rows = list(
        zip(
            itertools.cycle(_SIZES),
            itertools.cycle(_COLOURS),
            nouns * 3,
            itertools.cycle(_PLACES),
        )
    )
    questions = [f"the {z} {c} {s} {p}" for z, c, s, p in rows]
    for q in itertools.chain(questions[:: len(_SHAPES)], _REQUESTS):
        for variant in PROMPTS.values():
            yield variant.render(q)
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


# --------------------------------------------------------------------------- segmenter


def build_segmenter(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 64,
    hidden_size: int = 32,
    stage_dims: tuple[int, int, int, int] = (8, 16, 32, 64),
    stage_heads: tuple[int, int, int, int] = (1, 1, 2, 2),
) -> Path:
    """Build and save a random SAM2 (``Sam2Model`` + ``Sam2Processor``); return ``out_dir``.

    The Hiera backbone has four stages (1, 1, 2, 1 blocks) at strides 4, 8, 16 and 32 of
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
                # One global-attention block after the windowed one at stride 16, the stage the mask
                # decoder attends to (as SAM2's global blocks sit inside its third stage). A global
                # block may not open a pooling stage: its window size is halved by the query stride.
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": list(stage_dims),
                "num_attention_heads_per_stage": list(stage_heads),
                # The first window must tile the stride-4 grid exactly (windowed positional embedding).
                "window_size_per_stage": [8, 4, 4, 2],
                "global_attention_blocks": [3],
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
