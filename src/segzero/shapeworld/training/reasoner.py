"""Stage 2: the mini Qwen2.5-VL reasoner, built at random with a tokenizer that knows ShapeWorld's words,
and the loading and saving every later reasoner stage shares.

A reasoner folder is a Hugging Face model folder plus ``segzero.json``, which records the frame the
reasoner sees and answers in (:func:`segzero.hub.write_model_meta`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzero.hub import read_model_meta, write_model_meta
from segzero.prompts import DEFAULT_PROMPT
from segzero.shapeworld.generator import DEFAULT_SIZE, SPLIT_SEEDS
from segzero.shapeworld.training.common import CORPUS_SEED_OFFSET
from segzero.tiny import QWEN_ROPE_THETA


@dataclass
class ReasonerBuildConfig:
    """Size of the mini Qwen2.5-VL reasoner (``reasoner.*`` settings; :func:`segzero.tiny.build_reasoner`)."""

    frame: int = field(
        default=224,
        metadata={
            "help": "Side of the square frame the reasoner sees and answers in. Qwen2.5-VL merges 28x28 "
            "pixels into one token: 224 gives an 8x8 grid of image tokens, 112 a 4x4 one."
        },
    )
    vocab_size: int = field(
        default=1024,
        metadata={"help": "BPE vocabulary before the special tokens, learnt on the ShapeWorld corpus."},
    )
    corpus_samples: int = field(
        default=400,
        metadata={
            "help": "ShapeWorld samples per family whose requests and explanations feed the tokenizer."
        },
    )
    hidden_size: int = field(default=192, metadata={"help": "Width of the language model."})
    num_layers: int = field(default=4, metadata={"help": "Layers of the language model."})
    num_heads: int = field(default=6, metadata={"help": "Attention heads of the language model."})
    num_kv_heads: int = field(default=2, metadata={"help": "Key/value heads of the language model."})
    vision_depth: int = field(default=4, metadata={"help": "Blocks of the vision tower."})
    vision_hidden: int = field(default=96, metadata={"help": "Width of the vision tower."})
    vision_heads: int = field(default=2, metadata={"help": "Attention heads of the vision tower."})
    rope_theta: float = field(
        default=QWEN_ROPE_THETA,
        metadata={"help": "Rotary base of the language model (the released models use 1e6)."},
    )
    mrope_section: tuple[int, int, int] | None = field(
        default=None,
        metadata={
            "help": "Rotary frequency pairs for time, rows and columns; null: Qwen's 1 : 1.5 : 1.5 split."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds the weights."})


def reasoner_corpus(n_per_family: int = 400, size: int = DEFAULT_SIZE) -> Iterator[str]:
    """Text the mini reasoner's tokenizer learns its merges from: ShapeWorld requests of both families,
    their explanations, and answers in the JSON form the reasoner writes.

    Words only; no image, box or mask, so nothing about held-out scenes leaks into the tokenizer (and
    digits are single tokens anyway: Qwen's pre-tokeniser splits numbers into digits).
    """
    from segzero.shapeworld.generator import FAMILIES, make_sample

    for family in FAMILIES:
        for seed in range(n_per_family):
            sample = make_sample(SPLIT_SEEDS["train"].start + CORPUS_SEED_OFFSET + seed, family, size=size)
            yield sample.request
            yield f"<think> {sample.extra['explanation']} </think>"
    for i in range(200):
        a, b = (37 * i) % 200, (53 * i) % 200
        yield (
            f'<answer>{{"bbox": [{a}, {b}, {a + 20}, {b + 31}], "points_1": [{a + 9}, {b + 12}], '
            f'"points_2": [{a + 11}, {b + 25}]}}</answer>'
        )


def build_shapeworld_reasoner(out_dir: str | Path, config: ReasonerBuildConfig | None = None) -> Path:
    """A random mini reasoner with a ShapeWorld tokenizer and its ``segzero.json`` (the frame)."""
    from segzero.tiny import build_reasoner

    config = config or ReasonerBuildConfig()
    out = build_reasoner(
        out_dir,
        seed=config.seed,
        frame=config.frame,
        vocab_size=config.vocab_size,
        corpus=list(reasoner_corpus(config.corpus_samples)),
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads,
        vision_depth=config.vision_depth,
        vision_hidden=config.vision_hidden,
        vision_heads=config.vision_heads,
        rope_theta=config.rope_theta,
        mrope_section=config.mrope_section,
    )
    write_model_meta(out, frame=config.frame, prompt=DEFAULT_PROMPT, method="random")
    return out


def load_reasoner(reasoner_dir: str | Path, device: str) -> Any:
    """A reasoner folder to train, in float32, in the frame its ``segzero.json`` records."""
    from segzero.reasoner import Reasoner

    frame = read_model_meta(reasoner_dir)["reasoner_frame"]
    if frame is None:
        raise FileNotFoundError(f"{reasoner_dir} has no segzero.json saying its frame")
    return Reasoner.from_pretrained(str(reasoner_dir), device=device, dtype="float32", frame=frame)


def save_reasoner(reasoner: Any, out_dir: str | Path, method: str, prompt: str = DEFAULT_PROMPT) -> Path:
    """Save a trained reasoner (model in eval mode, processor, ``segzero.json`` with the prompt variant it
    was trained with) to ``out_dir``."""
    out = Path(out_dir)
    reasoner.model.eval().save_pretrained(out)
    reasoner.processor.save_pretrained(out)
    write_model_meta(out, frame=reasoner.frame, prompt=prompt, method=method)
    return out


def tower_token_px(model: Any) -> int:
    """Pixels of the reasoner frame per vision-tower output token (patch size x spatial merge)."""
    vision = model.config.vision_config
    return vision.patch_size * vision.spatial_merge_size
