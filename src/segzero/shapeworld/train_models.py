"""Train the ShapeWorld mini models: a SAM2 segmenter and a Qwen2.5-VL reasoner, on a CPU, from nothing.

The models are the real architectures (``Sam2Model``, ``Qwen2_5_VLForConditionalGeneration``) at toy
size, built by :mod:`segzero.tiny` and trained here on procedural ShapeWorld scenes. They are what
``segzero demo`` runs and what ships inside the package (:data:`SHIPPED_MODELS`).

Stages, each a function that reads and writes Hugging Face folders:

1. :func:`train_segmenter`: SAM2 learns masks from box and point prompts (its own short loop, since
   the paper's SAM2 is pretrained and frozen; here it must first be made).
2. :func:`build_shapeworld_reasoner`: a random reasoner whose tokenizer knows the ShapeWorld words;
   :func:`pretrain_tower` then teaches its vision tower what is where (the toy's pretrained ViT).
3. Warm-up SFT of the reasoner on the answer format (referring requests; the thinking lists every
   shape with its box, :func:`scene_thinking`), then GRPO on the Seg-Zero rewards through
   ``segzero train grpo``.

Frames: scenes are ``size x size`` pixels (112); the reasoner answers in its own ``frame`` (recorded
in ``segzero.json`` beside it); SAM2 gets image-frame prompts, scaled into its ``image_size`` input.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segzero.errors import InputError
from segzero.geometry import mask_prompts
from segzero.hub import read_model_meta, write_model_meta
from segzero.prompts import DEFAULT_PROMPT
from segzero.shapeworld.generator import (
    DEFAULT_SIZE,
    KINDS,
    PALETTE,
    SCENES_PER_SEED,
    SIZE_CLASSES,
    SPLIT_SEEDS,
    TEMPLATES,
    generate_scene,
)
from segzero.tiny import QWEN_ROPE_THETA

#: Folder inside the package that holds the shipped checkpoints (``reasoner/`` and ``segmenter/``).
SHIPPED_MODELS = Path(__file__).resolve().parent / "models"

#: Generation budget of a ShapeWorld answer: the longest knowledge-stage target (four shapes listed, the
#: reasoning written out, then the answer) is 211 tokens on 1500 validation requests.
MAX_COMPLETION_TOKENS = 224

#: The trained checkpoints must stay well under this many bytes together (they ship in the wheel).
SIZE_BUDGET = 25_000_000

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- segmenter


@dataclass
class SegmenterTrainConfig:
    """How the mini SAM2 is built and trained.

    Attributes:
        image_size: side of SAM2's square input (a multiple of 32); masks come out at a quarter of it.
        hidden_size: width of the FPN, prompt encoder and mask decoder.
        stage_dims / stage_heads: Hiera width and heads per stage.
        scenes: training scenes (every shape of a scene is a training object).
        overlap_fraction: share of training scenes whose shapes may overlap (occluded masks).
        n_shapes: least and most shapes per training scene; busier scenes than the requests' (2-4)
            make "segment every shape" a poor answer, which pushes the decoder to use the prompts.
        steps: optimiser steps; batch_size: objects per step.
        lr: AdamW peak learning rate (cosine decay after a short warm-up); weight_decay: AdamW's.
        mode_weights: how often a step prompts with box + points, box only, points only (Seg-Zero's
            answer gives box and two points; the others keep the model usable for the ablations).
        box_jitter: standard deviation of box-corner noise, as a fraction of the box side (the
            reasoner's boxes are never exact).
        seed: seeds weights, scene choice and prompt sampling.
        threads: torch CPU threads; device: where the model trains (``cpu`` or ``cuda``).
        max_seconds: stop after this much wall time (the model so far is saved).
        init_from: continue from the weights of this segmenter folder instead of a random build.
    """

    image_size: int = 128
    hidden_size: int = 64
    stage_dims: tuple[int, int, int, int] = (16, 32, 64, 128)
    stage_heads: tuple[int, int, int, int] = (1, 1, 2, 2)
    scenes: int = 1500
    overlap_fraction: float = 0.2
    n_shapes: tuple[int, int] = (2, 4)
    size: int = DEFAULT_SIZE
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    mode_weights: tuple[float, float, float] = (0.6, 0.2, 0.2)
    box_jitter: float = 0.06
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    max_seconds: float | None = None
    init_from: str | None = None


@dataclass
class _Object:
    image: np.ndarray  # uint8 (size, size, 3)
    mask: np.ndarray  # bool (size, size)
    box: tuple[int, int, int, int]
    points: tuple[tuple[int, int], tuple[int, int]]


def segmenter_objects(
    n_scenes: int,
    size: int = DEFAULT_SIZE,
    overlap_fraction: float = 0.0,
    split: str = "train",
    seed_offset: int = 0,
    n_shapes: tuple[int, int] = (2, 4),
) -> list[_Object]:
    """Every shape of ``n_scenes`` ShapeWorld scenes of a split, with its gt box and two inscribed points.

    Scene seeds are ``SPLIT_SEEDS[split].start + seed_offset + i`` times :data:`SCENES_PER_SEED`, inside
    the split's scene range, so training and held-out objects never share a scene.
    """
    out = []
    start = SPLIT_SEEDS[split].start + seed_offset
    for i in range(n_scenes):
        overlap = (i % 100) < overlap_fraction * 100
        scene = generate_scene(
            (start + i) * SCENES_PER_SEED + 999, size=size, allow_overlap=overlap, n_shapes=n_shapes
        )
        for shape in scene.shapes:
            prompts = mask_prompts(shape.mask)
            if prompts is None or shape.area < 12:
                continue
            box, points = prompts
            out.append(_Object(scene.image, shape.mask, box, points))
    return out


def _jitter_box(box: Sequence[int], sigma: float, size: int, rng: random.Random) -> list[float]:
    x1, y1, x2, y2 = box
    sx, sy = sigma * (x2 - x1 + 1), sigma * (y2 - y1 + 1)
    out = [x1 + rng.gauss(0, sx), y1 + rng.gauss(0, sy), x2 + rng.gauss(0, sx), y2 + rng.gauss(0, sy)]
    out = [min(max(v, 0.0), size - 1.0) for v in out]
    return [min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])]


def _inner_points(obj: _Object, n: int, rng: random.Random) -> list[list[float]]:
    """Seg-Zero's two inscribed-circle centres half the time, otherwise random pixels of the mask."""
    if rng.random() < 0.5:
        return [list(map(float, p)) for p in obj.points[:n]]
    ys, xs = np.nonzero(obj.mask)
    picks = [rng.randrange(len(xs)) for _ in range(n)]
    return [[float(xs[k]), float(ys[k])] for k in picks]


def _segmenter_batch(
    objects: Sequence[_Object], mode: str, config: SegmenterTrainConfig, rng: random.Random
) -> dict[str, Any]:
    """Prompts of one batch in SAM2's input frame (image pixels scaled by ``image_size / size``)."""
    import torch

    k = config.image_size / config.size
    batch: dict[str, Any] = {}
    if mode in ("both", "box"):
        boxes = []
        for obj in objects:
            box = list(map(float, obj.box))
            if rng.random() < 0.7:
                box = _jitter_box(obj.box, config.box_jitter, config.size, rng)
            boxes.append([[v * k for v in box]])
        batch["input_boxes"] = torch.tensor(boxes, dtype=torch.float32)
    if mode in ("both", "points"):
        n = 2 if mode == "both" or rng.random() < 0.5 else 1
        points = [[[[x * k, y * k] for x, y in _inner_points(obj, n, rng)]] for obj in objects]
        batch["input_points"] = torch.tensor(points, dtype=torch.float32)
        batch["input_labels"] = torch.ones(len(objects), 1, n, dtype=torch.long)
    return batch


def _segmenter_loss(pred_masks: Any, iou_scores: Any, targets: Any) -> tuple[Any, Any]:
    """SAM's multimask loss: the best candidate's focal + dice, plus the IoU head's MSE on all candidates.

    Args:
        pred_masks: float ``(B, 3, h, w)`` logits; they are upsampled to the targets' ``(H, W)`` with
            bilinear interpolation, as ``Sam2Processor.post_process_masks`` does at inference.
        iou_scores: float ``(B, 3)`` predicted IoUs.
        targets: float ``(B, H, W)`` 0/1.

    Returns:
        ``(loss, iou)``: the scalar loss and the ``(B, 3)`` IoU of each thresholded candidate.
    """
    import torch
    import torch.nn.functional as F

    logits = F.interpolate(pred_masks, targets.shape[-2:], mode="bilinear", align_corners=False)
    t = targets[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    focal = (bce * (1 - p_t) ** 2).mean(dim=(-2, -1))
    dice = 1 - (2 * (p * t).sum(dim=(-2, -1)) + 1) / (p.sum(dim=(-2, -1)) + t.sum(dim=(-2, -1)) + 1)
    per_candidate = 20 * focal + dice
    best = per_candidate.argmin(dim=1)
    rows = torch.arange(len(best))
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & (t > 0.5)).sum(dim=(-2, -1)).float()
        union = (hard | (t > 0.5)).sum(dim=(-2, -1)).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    iou_loss = F.mse_loss(iou_scores, iou)
    return per_candidate[rows, best].mean() + iou_loss, iou


def tie_positional_encodings(model: Any) -> None:
    """Give SAM2's prompt encoder the image's random Fourier positional basis (in place).

    SAM2 encodes prompt coordinates and image positions with one and the same random matrix, so that a
    click and the pixel under it look alike to the mask decoder; released checkpoints hold it twice,
    identical. A randomly initialised ``Sam2Model`` draws the two copies independently, and the decoder
    must then learn to relate two unrelated bases before prompts mean anything (thousands of steps on
    a plateau where it segments every shape at once).
    """
    import torch

    with torch.no_grad():
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding
        )


def _lr_at(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_segmenter(
    out_dir: str | Path, config: SegmenterTrainConfig | None = None, *, log: Log = _print
) -> dict[str, Any]:
    """Build a mini SAM2 with :func:`segzero.tiny.build_segmenter` and train it on ShapeWorld objects.

    Each step draws ``batch_size`` objects and one prompting mode (see
    :attr:`SegmenterTrainConfig.mode_weights`), runs ``Sam2Model`` with ``multimask_output=True`` and
    minimises :func:`_segmenter_loss`. The trained model replaces the random one in ``out_dir``.

    Returns:
        ``{"seconds", "steps", "final_loss", "train_iou", "config"}``; ``train_iou`` is the mean IoU of
        the candidate with the highest predicted IoU over the last 100 steps.
    """
    import torch
    from PIL import Image
    from transformers import Sam2Model, Sam2Processor

    from segzero.tiny import build_segmenter

    config = config or SegmenterTrainConfig()
    torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    out = Path(out_dir)
    if config.init_from is None:
        build_segmenter(
            out,
            seed=config.seed,
            image_size=config.image_size,
            hidden_size=config.hidden_size,
            stage_dims=config.stage_dims,
            stage_heads=config.stage_heads,
        )
        source = out
    else:
        source = Path(config.init_from)
    model = Sam2Model.from_pretrained(source).to(config.device).train()
    if config.init_from is None:
        tie_positional_encodings(model)
    processor = Sam2Processor.from_pretrained(source)
    processor.save_pretrained(out)
    objects = segmenter_objects(config.scenes, config.size, config.overlap_fraction, n_shapes=config.n_shapes)
    log(
        f"  segmenter: {len(objects)} training objects from {config.scenes} scenes "
        f"({time.perf_counter() - t0:.0f}s)"
    )
    pixel_cache: dict[int, Any] = {}

    def pixels(obj: _Object) -> Any:
        key = id(obj.image)
        if key not in pixel_cache:
            pixel_cache[key] = processor(images=[Image.fromarray(obj.image)], return_tensors="pt")[
                "pixel_values"
            ][0]
        return pixel_cache[key]

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    modes = ("both", "box", "points")
    recent_iou: list[float] = []
    loss_value = float("nan")
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config.steps, config.lr)
        chosen = [objects[rng.randrange(len(objects))] for _ in range(config.batch_size)]
        mode = rng.choices(modes, weights=config.mode_weights)[0]
        prompts = _segmenter_batch(chosen, mode, config, rng)
        pixel_values = torch.stack([pixels(o) for o in chosen]).to(config.device)
        targets = torch.from_numpy(np.stack([o.mask for o in chosen])).float().to(config.device)
        prompts = {k: v.to(config.device) for k, v in prompts.items()}
        result = model(pixel_values=pixel_values, multimask_output=True, **prompts)
        loss, iou = _segmenter_loss(result.pred_masks[:, 0], result.iou_scores[:, 0], targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(loss.detach())
        picked = result.iou_scores[:, 0].detach().argmax(dim=1)
        recent_iou = (recent_iou + iou[torch.arange(len(picked)), picked].tolist())[
            -100 * config.batch_size :
        ]
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            log(
                f"  segmenter step {step + 1}/{config.steps}: loss {loss_value:.3f}, "
                f"train IoU (chosen mask) {np.mean(recent_iou):.3f}, {time.perf_counter() - t0:.0f}s"
            )
        if (step + 1) % 500 == 0:  # a long CPU run leaves a usable model behind at every stage
            model.save_pretrained(out)
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds:
            log(f"  segmenter: time budget of {config.max_seconds:.0f}s reached at step {step + 1}")
            break
    model.cpu().eval().save_pretrained(out)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "steps": step + 1,
        "final_loss": loss_value,
        "train_iou": float(np.mean(recent_iou)),
        "config": asdict(config),
    }


def evaluate_segmenter(
    segmenter_dir: str | Path,
    n_scenes: int = 100,
    split: str = "val",
    modes: Sequence[str] = ("both", "box", "points"),
) -> dict[str, float]:
    """Mean mask IoU of the segmenter on held-out ShapeWorld objects given their gt prompts.

    Goes through :class:`segzero.segmenter.Segmenter` (best of 3 candidates by predicted IoU), with
    the gt box and the two inscribed points in the image frame.

    Returns:
        mode -> mean IoU over every shape of ``n_scenes`` scenes of ``split``.
    """
    from PIL import Image

    from segzero.frames import Frame, ObjectPrompt
    from segzero.geometry import mask_iou
    from segzero.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(str(segmenter_dir), device="cpu", dtype="float32")
    objects = segmenter_objects(n_scenes, split=split)
    images: dict[int, Image.Image] = {}
    result = {}
    for mode in modes:
        imgs = [images.setdefault(id(o.image), Image.fromarray(o.image)) for o in objects]
        prompts = [
            [ObjectPrompt.from_lists(o.box, o.points, Frame.image(img.size))] for o, img in zip(objects, imgs)
        ]
        outs = segmenter.segment_many(imgs, prompts, mode=mode)
        result[mode] = float(np.mean([mask_iou(out.mask, o.mask) for out, o in zip(outs, objects)]))
    return result


# --------------------------------------------------------------------------- reasoner


@dataclass
class ReasonerBuildConfig:
    """Size of the mini Qwen2.5-VL reasoner (see :func:`segzero.tiny.build_reasoner`).

    Attributes:
        frame: side of the square frame the reasoner sees and answers in. 224 gives an 8x8 grid of
            image tokens (each 28 px of the frame, 14 px of a 112 px scene), fine enough to tell where
            a 15 px shape is; 112 would give 4x4.
        vocab_size: BPE vocabulary before the special tokens, learnt on :func:`reasoner_corpus`.
        corpus_samples: ShapeWorld samples per family whose requests and explanations feed the tokenizer.
        hidden_size / num_layers / num_heads / num_kv_heads: the language model.
        vision_depth / vision_hidden / vision_heads: the vision tower.
        rope_theta / mrope_section: the language model's rotary settings (see
            :func:`segzero.tiny.build_reasoner`); the defaults are the released models' (1e6, and
            Qwen's 1 : 1.5 : 1.5 split when ``mrope_section`` is None).
        seed: seeds the weights.
    """

    frame: int = 224
    vocab_size: int = 1024
    corpus_samples: int = 400
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6
    num_kv_heads: int = 2
    vision_depth: int = 4
    vision_hidden: int = 96
    vision_heads: int = 2
    rope_theta: float = QWEN_ROPE_THETA
    mrope_section: tuple[int, int, int] | None = None
    seed: int = 0


def reasoner_corpus(n_per_family: int = 400, size: int = DEFAULT_SIZE) -> Iterator[str]:
    """Text the mini reasoner's tokenizer learns its merges from: ShapeWorld requests of both families,
    their explanations, and answers in the JSON form the reasoner writes.

    Words only; no image, box or mask, so nothing about held-out scenes leaks into the tokenizer (and
    digits are single tokens anyway: Qwen's pre-tokeniser splits numbers into digits).
    """
    from segzero.shapeworld.generator import FAMILIES, make_sample

    for family in FAMILIES:
        for seed in range(n_per_family):
            sample = make_sample(SPLIT_SEEDS["train"].start + 9_000_000 + seed, family, size=size)
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


@dataclass
class ReasonerExample:
    """One reasoner example: the original image, the request, the target completion, the gt in the frame."""

    image: Any  # PIL image, original frame
    request: str
    completion: str
    boxes: list[list[int]]  # reasoner frame
    points: list[list[list[int]]]  # reasoner frame
    sample: Any = None


#: What a warm-up example's ``<think>`` holds (:func:`reasoner_examples`).
THINKING = ("scene", "scene-echo", "scene-explain", "explanation", "none")
#: Words that end a :func:`scene_thinking` listing and introduce the shape the request means.
MEANS = "the request means"


def scene_thinking(sample: Any, frame: int, echo: bool = False, explain: bool = False) -> str:
    """The warm-up's thinking: every shape with its box (reasoner frame), left to right, then the target::

        <think> small red triangle [x1,y1,x2,y2]; large blue circle [...]. the request means the small
        red triangle [x1,y1,x2,y2]. </think>

    Every shape's box is supervised in every example (grounded captioning, as grounding models are
    pretrained), and the answer's box is a copy of one the thinking listed. With the one-line
    explanation as thinking no probe passed box IoU 0.14 on multi-shape scenes within 2500 steps; this
    target reached 0.28 in 3000 (docs/shapeworld.md).

    With ``echo`` the request is repeated just before the choice (``... . the request is 'the red
    shape'; the request means the ...``): the choice then reads the request's words a few tokens back
    instead of about 200, across the prompt's instructions (docs/shapeworld.md, session 13).

    With ``explain`` the generator's explanation follows the repeated request (``... the request is
    'the shape that has the most corners'; Counting corners: the red square has 4, the blue triangle has
    3. The square has the most. the request means the ...``): the reasoning written out, with the facts it
    needs (corner counts, what rolls, what colour a lemon is), so the choice copies a shape the text just
    named (session 15).
    """
    from segzero.errors import InputError

    shapes, targets = sample.extra.get("shapes"), sample.extra.get("targets")
    if not shapes or not targets:
        raise InputError(f"sample {sample.id} has no shape listing (extra['shapes'] / ['targets'])")

    def named(shape: dict[str, Any]) -> str:
        return f"{shape['name']} [{','.join(map(str, frame_box(sample, shape, frame)))}]"

    left_to_right = sorted(range(len(shapes)), key=lambda i: shapes[i]["box"][0] + shapes[i]["box"][2])
    listing = "; ".join(named(shapes[i]) for i in left_to_right)
    meant = " and the ".join(named(shapes[i]) for i in sorted(targets, key=left_to_right.index))
    said = f"the request is '{sample.request}'; " if echo or explain else ""
    if explain:
        said += sample.extra["explanation"] + " "
    return f"<think> {listing}. {said}{MEANS} the {meant}. </think>"


def frame_box(sample: Any, shape: dict[str, Any], frame: int) -> tuple[int, ...]:
    """A shape's box (one of ``sample.extra["shapes"]``, image frame) in the reasoner ``frame``, mapped as
    ground truth is (:func:`segzero.frames.to_reasoner_frame`)."""
    from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame

    image = Frame.image((sample.width, sample.height))
    return to_reasoner_frame(ObjectPrompt.from_lists(shape["box"], (), image), frame).box


#: One listed shape in a :func:`scene_thinking` text: size, colour and kind words, then its box.
_LISTED = re.compile(r"(\w+) (\w+) (\w+) \[(\d+),(\d+),(\d+),(\d+)\]")
#: The words of a shape name, in order (``"small blue ellipse"``).
NAME_PARTS = ("size", "colour", "kind")


def listing_accuracy(completions: Sequence[str], samples: Sequence[Any], frame: int) -> dict[str, float]:
    """How well completions' scene listings (:func:`scene_thinking`'s form) name the shapes they box.

    Each shape listed before :data:`MEANS` is matched to the scene shape whose box (reasoner
    frame) it overlaps most; with box IoU >= 0.5 it counts as matched and its size, colour and kind words
    are compared with that shape's name.

    Returns:
        ``shapes`` (scene shapes in all), ``listed`` (listed shapes parsed), ``matched``, and for each of
        :data:`NAME_PARTS` the share of matched shapes named right (0.0 when none matched).
    """
    from segzero.geometry import box_iou

    if len(completions) != len(samples):
        raise ValueError(f"{len(completions)} completions for {len(samples)} samples")
    counts = dict.fromkeys(("shapes", "listed", "matched", *NAME_PARTS), 0)
    for completion, sample in zip(completions, samples):
        truth = [(shape["name"].split(), frame_box(sample, shape, frame)) for shape in sample.extra["shapes"]]
        counts["shapes"] += len(truth)
        for item in _LISTED.finditer(completion.split(MEANS)[0]):
            counts["listed"] += 1
            words, box = item.groups()[:3], tuple(int(v) for v in item.groups()[3:])
            name, best = max(truth, key=lambda t: box_iou(box, t[1]))
            if box_iou(box, best) < 0.5:
                continue
            counts["matched"] += 1
            for part, said, true in zip(NAME_PARTS, words, name):
                counts[part] += said == true
    matched = counts["matched"]
    return {**counts, **{part: counts[part] / matched if matched else 0.0 for part in NAME_PARTS}}


#: What :func:`choice_outcome` says of a completion's choice of the meant shape.
CHOICE_OUTCOMES = ("right", "wrong", "unlisted", "none")
_CHOSEN = re.compile(MEANS + r" the \w+ \w+ \w+ \[(\d+),(\d+),(\d+),(\d+)\]")


def choice_outcome(completion: str, sample: Any, frame: int) -> str:
    """Which listed shape a completion in :func:`scene_thinking`'s form chose, judged by box (reasoner frame).

    ``"right"``: the box after :data:`MEANS` has IoU >= 0.5 with a target's; ``"wrong"``: it does not,
    though the listing before it boxes a target so (the choice failed, not the listing); ``"unlisted"``:
    no listed box matches a target (the listing failed); ``"none"``: no choice could be read.
    """
    from segzero.geometry import box_iou

    targets = [frame_box(sample, sample.extra["shapes"][i], frame) for i in sample.extra["targets"]]
    chosen = _CHOSEN.search(completion)
    if chosen is None:
        return "none"

    def hits(box: Sequence[int]) -> bool:
        return any(box_iou(box, target) >= 0.5 for target in targets)

    if hits(tuple(int(v) for v in chosen.groups())):
        return "right"
    listed = _LISTED.finditer(completion[: chosen.start()])
    return "wrong" if any(hits(tuple(int(v) for v in item.groups()[3:])) for item in listed) else "unlisted"


def reasoner_examples(samples: Sequence[Any], frame: int, thinking: str = "scene") -> list[ReasonerExample]:
    """Targets for ShapeWorld samples: ``<think> ... </think><answer>{json}</answer>``.

    The answer is :func:`segzero.data.prepared.build_solution` of the gt box and two inscribed points
    mapped into the reasoner frame, as a prepared dataset would hold it.

    Args:
        thinking: one of :data:`THINKING`: ``"scene"`` (:func:`scene_thinking`, the warm-up's),
            ``"scene-echo"`` (the same with the request repeated before the choice), ``"scene-explain"``
            (the request and the generator's explanation before the choice), ``"explanation"``
            (the generator's one-line explanation) or ``"none"`` (answer only).
    """
    from segzero.data.common import add_mask_prompts
    from segzero.data.prepared import build_solution
    from segzero.errors import InputError
    from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame

    if thinking not in THINKING:
        raise InputError(f"thinking must be one of {THINKING}, got {thinking!r}")
    out = []
    for sample in samples:
        if not sample.points:
            add_mask_prompts(sample)
        image = Frame.image((sample.width, sample.height))
        mapped = to_reasoner_frame(ObjectPrompt.from_lists(sample.boxes[0], sample.points[0], image), frame)
        boxes = [list(mapped.box)]
        points = [[list(p) for p in mapped.points]]
        answer = f"<answer>{build_solution(boxes, points, 'single')}</answer>"
        if thinking in ("scene", "scene-echo", "scene-explain"):
            think = scene_thinking(
                sample, frame, echo=thinking == "scene-echo", explain=thinking == "scene-explain"
            )
        elif thinking == "explanation":
            think = f"<think> {sample.extra['explanation']} </think>"
        else:
            think = ""
        out.append(ReasonerExample(sample.image, sample.request, think + answer, boxes, points, sample))
    return out


class ShapeWorldExamples(Sequence[ReasonerExample]):
    """Reasoner examples of ``n`` ShapeWorld samples of a split, each made when it is read.

    Item ``i`` is :func:`reasoner_examples` of sample ``SPLIT_SEEDS[split].start + seed_offset + i``
    (as :func:`segzero.shapeworld.generator.make_split` yields it), so a warm-up can draw from tens of
    thousands of scenes without holding them all in memory (an example costs a few milliseconds).
    """

    def __init__(
        self,
        split: str,
        n: int,
        family: str,
        frame: int,
        *,
        thinking: str = "scene",
        seed_offset: int = 0,
        templates: Sequence[str] = (),
        **options: Any,
    ) -> None:
        """``options`` go to :func:`~segzero.shapeworld.generator.make_split` (e.g. ``n_shapes``); with
        ``templates`` item ``i`` uses ``templates[i % len(templates)]``."""
        from segzero.errors import InputError

        if templates and "template" in options:
            raise InputError("give ShapeWorldExamples either template or templates, not both")
        seeds = SPLIT_SEEDS[split]
        if n < 0 or seed_offset < 0 or seeds.start + seed_offset + n > seeds.stop:
            raise InputError(
                f"split {split!r} holds {len(seeds)} seeds; n={n} from offset {seed_offset} does not fit."
            )
        self.split, self.n, self.family, self.frame = split, n, family, frame
        self.thinking, self.seed_offset, self.options = thinking, seed_offset, options
        self.templates = tuple(templates)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ReasonerExample:  # type: ignore[override]
        from segzero.shapeworld.generator import make_split

        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        options = dict(self.options)
        if self.templates:
            options["template"] = self.templates[i % len(self.templates)]
        (sample,) = make_split(self.split, 1, self.family, seed_offset=self.seed_offset + i, **options)
        return reasoner_examples([sample], self.frame, self.thinking)[0]


class InterleavedExamples(Sequence[ReasonerExample]):
    """Several example sequences in a fixed cycle: of every ``sum(counts)`` items, the first ``counts[0]``
    come from ``parts[0]``, the next ``counts[1]`` from ``parts[1]``, and so on, each part read in order.

    The length is as many whole cycles as the parts fill, so no item is read twice in one pass.
    """

    def __init__(self, parts: Sequence[Sequence[ReasonerExample]], counts: Sequence[int]) -> None:
        from segzero.errors import InputError

        if not parts or len(parts) != len(counts) or any(c < 1 for c in counts):
            raise InputError(
                f"give one count >= 1 per part; got {len(parts)} parts and counts {list(counts)}"
            )
        self.parts, self.counts = list(parts), list(counts)
        self.n = min(len(part) // c for part, c in zip(parts, counts)) * sum(counts)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ReasonerExample:  # type: ignore[override]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        cycle, j = divmod(i % self.n, sum(self.counts))
        for part, count in zip(self.parts, self.counts):
            if j < count:
                return part[cycle * count + j]
            j -= count
        raise AssertionError("unreachable: j < sum(counts)")


@dataclass
class SFTLoopConfig:
    """The warm-up's own supervised loop (completion-only cross-entropy, AdamW, cosine schedule)."""

    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    max_seconds: float | None = None
    #: The vision tower's (``model.visual``) learning rate as a share of ``lr``; 0 keeps it at its
    #: starting weights (no gradient through it at all).
    vision_lr_scale: float = 1.0
    #: The step from which the tower trains at the full rate (``vision_lr_scale`` only before it);
    #: ``None`` keeps ``vision_lr_scale`` throughout.
    vision_full_from: int | None = None
    #: Shape attributes (of :data:`SHAPE_ATTRIBUTES`) that an auxiliary linear head must read from
    #: the tower: for every scene shape, from the mean of the tower's output tokens under its box
    #: (:func:`box_token_span`). The head is dropped after the warm-up; it only gives the tower a
    #: direct gradient for what the language model must name. ``()`` turns it off.
    shape_loss: tuple[str, ...] = ()
    #: The auxiliary loss's weight beside the completion cross-entropy.
    shape_loss_weight: float = 1.0
    eval_every: int = 0
    eval_samples: Sequence[Any] = field(default_factory=list)
    #: ``(reasoner, eval_samples) -> metrics`` run every ``eval_every`` steps
    #: (default: :func:`evaluate_reasoner`).
    evaluate: Callable[[Any, Sequence[Any]], dict[str, float]] | None = None


@dataclass
class _EncodedExample:
    """One SFT example after the tokenizer: token ids, completion length, the image in the reasoner frame.

    The image's patches are made per batch (:func:`_sft_batch`): they take 8x the memory of the image.
    """

    input_ids: Any  # 1-D LongTensor: chat prompt + completion + eos
    mm_token_type_ids: Any  # 1-D IntTensor like input_ids: 1 on image tokens (the model's M-RoPE needs it)
    image: Any  # PIL image, reasoner frame
    completion_tokens: int
    #: :func:`shape_labels` of the example's sample; empty for a sample without a shape listing.
    shapes: list[tuple[TokenSpan, dict[str, int]]] = field(default_factory=list)


#: What each shape attribute's auxiliary head chooses from (:attr:`SFTLoopConfig.shape_loss`).
SHAPE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kind": tuple(sorted(KINDS)),
    "colour": tuple(PALETTE),
    "size": SIZE_CLASSES,
}


def check_shape_loss(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple if each is one of :data:`SHAPE_ATTRIBUTES`, else an :class:`InputError`."""
    unknown = sorted(set(names) - set(SHAPE_ATTRIBUTES))
    if unknown:
        raise InputError(f"shape_loss names unknown attributes {unknown}; known: {sorted(SHAPE_ATTRIBUTES)}")
    return tuple(names)


#: ``((first, centre, last) row, (first, centre, last) column)`` of a token grid (:func:`box_token_span`).
TokenSpan = tuple[tuple[int, ...], tuple[int, ...]]


def box_token_span(box: Sequence[float], merged: int, grid: int) -> TokenSpan:
    """Rows and columns of a ``grid x grid`` vision-tower token grid (``merged`` px per token) under a box
    in the reasoner frame: ``((first, centre, last) row, (first, centre, last) column)``."""
    x1, y1, x2, y2 = box
    rows = tuple(min(int(v // merged), grid - 1) for v in (y1, (y1 + y2) / 2, y2))
    cols = tuple(min(int(v // merged), grid - 1) for v in (x1, (x1 + x2) / 2, x2))
    return rows, cols


def shape_labels(sample: Any, frame: int, merged: int) -> list[tuple[TokenSpan, dict[str, int]]]:
    """Every shape of a ShapeWorld sample: the tokens its box covers (:func:`box_token_span`) and its
    index in each of :data:`SHAPE_ATTRIBUTES`."""
    grid = frame // merged
    out = []
    for shape in sample.extra.get("shapes") or []:
        rows, cols = box_token_span(frame_box(sample, shape, frame), merged, grid)
        size, colour, kind = shape["name"].split()
        labels = {
            "kind": SHAPE_ATTRIBUTES["kind"].index(kind),
            "colour": SHAPE_ATTRIBUTES["colour"].index(colour),
            "size": SHAPE_ATTRIBUTES["size"].index(size),
        }
        out.append(((rows, cols), labels))
    return out


def tower_token_px(model: Any) -> int:
    """Pixels of the reasoner frame per vision-tower output token (patch size x spatial merge)."""
    vision = model.config.vision_config
    return vision.patch_size * vision.spatial_merge_size


def _encode_examples(reasoner: Any, examples: Sequence[ReasonerExample]) -> list[_EncodedExample]:
    """Tokenise examples (chat prompt + completion + eos) the way the processor does with their images."""
    from segzero.reasoner import reasoner_image

    processor = reasoner.processor
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token
    out = []
    for ex in examples:
        text = reasoner.chat_text(ex.request) + ex.completion + eos
        image = reasoner_image(ex.image, reasoner.frame)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        # The prompt ends with "assistant\n" and the completion starts with "<": no merge across the cut.
        n = len(tokenizer(ex.completion + eos, add_special_tokens=False)["input_ids"])
        shapes = shape_labels(ex.sample, reasoner.frame, tower_token_px(reasoner.model)) if ex.sample else []
        out.append(_EncodedExample(inputs["input_ids"][0], inputs["mm_token_type_ids"][0], image, n, shapes))
    return out


def _shape_loss(tokens: Any, batch: Sequence[_EncodedExample], heads: Any, grid: int) -> Any:
    """Mean cross-entropy of the auxiliary heads on every shape of the batch (:attr:`SFTLoopConfig.shape_loss`).

    ``tokens``: the tower's merged output for the batch's images, ``grid * grid`` row-major tokens each.
    """
    import torch

    tokens = tokens.reshape(len(batch), grid, grid, -1)
    features, labels = [], []
    for row, ex in enumerate(batch):
        for (rows, cols), attributes in ex.shapes:
            features.append(tokens[row, rows[0] : rows[2] + 1, cols[0] : cols[2] + 1].mean(dim=(0, 1)))
            labels.append(attributes)
    if not features:
        raise InputError("the shape loss needs examples of ShapeWorld samples with a shape listing")
    stacked = torch.stack(features)
    losses = [
        torch.nn.functional.cross_entropy(head(stacked), torch.tensor([lab[name] for lab in labels]))
        for name, head in heads.items()
    ]
    return sum(losses) / len(losses)


def _sft_batch(batch: Sequence[_EncodedExample], processor: Any) -> dict[str, Any]:
    """Model inputs with labels only on each row's completion (left padding, as generation uses).

    ``mm_token_type_ids`` goes with the ids: without it Qwen2.5-VL silently falls back to 1-D text
    positions for the image tokens, so the model would train on other positions than it generates with.
    """
    import torch

    pad_token_id = processor.tokenizer.pad_token_id
    length = max(len(ex.input_ids) for ex in batch)
    input_ids = torch.full((len(batch), length), pad_token_id, dtype=torch.long)
    mm_token_type_ids = torch.zeros((len(batch), length), dtype=batch[0].mm_token_type_ids.dtype)
    attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), -100, dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex.input_ids)
        input_ids[row, length - n :] = ex.input_ids
        mm_token_type_ids[row, length - n :] = ex.mm_token_type_ids
        attention_mask[row, length - n :] = 1
        labels[row, length - ex.completion_tokens :] = ex.input_ids[-ex.completion_tokens :]
    patches = processor.image_processor(images=[ex.image for ex in batch], return_tensors="pt")
    return {
        "input_ids": input_ids,
        "mm_token_type_ids": mm_token_type_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": patches["pixel_values"],
        "image_grid_thw": patches["image_grid_thw"],
    }


def _load_reasoner(reasoner_dir: str | Path, device: str) -> Any:
    """A reasoner folder to train, in float32, in the frame its ``segzero.json`` records."""
    from segzero.reasoner import Reasoner

    frame = read_model_meta(reasoner_dir)["reasoner_frame"]
    if frame is None:
        raise FileNotFoundError(f"{reasoner_dir} has no segzero.json saying its frame")
    return Reasoner.from_pretrained(str(reasoner_dir), device=device, dtype="float32", frame=frame)


def _save_reasoner(reasoner: Any, out_dir: str | Path, method: str) -> Path:
    """Save a trained reasoner (model in eval mode, processor, ``segzero.json``) to ``out_dir``."""
    out = Path(out_dir)
    reasoner.model.eval().save_pretrained(out)
    reasoner.processor.save_pretrained(out)
    write_model_meta(out, frame=reasoner.frame, prompt=DEFAULT_PROMPT, method=method)
    return out


def sft_loop(
    reasoner_dir: str | Path,
    examples: Sequence[ReasonerExample],
    out_dir: str | Path,
    config: SFTLoopConfig | None = None,
    *,
    log: Log = _print,
) -> dict[str, Any]:
    """Supervised warm-up of a reasoner folder on ``examples``, saved (with ``segzero.json``) to ``out_dir``.

    Returns:
        ``{"seconds", "steps", "final_loss", "final_shape_loss", "evals": [(step, metrics), ...]}``
        (``final_shape_loss``: the auxiliary loss, ``None`` without one).
    """
    import torch

    config = config or SFTLoopConfig()
    if config.vision_lr_scale < 0:
        raise ValueError(f"vision_lr_scale must be >= 0, got {config.vision_lr_scale}")
    if config.vision_full_from is not None and config.vision_full_from < 0:
        raise ValueError(f"vision_full_from must be >= 0, got {config.vision_full_from}")
    check_shape_loss(config.shape_loss)
    torch.set_num_threads(config.threads)
    reasoner = _load_reasoner(reasoner_dir, config.device)
    model = reasoner.model
    vision = model.model.visual
    tower_speeds_up = config.vision_full_from is not None and config.vision_full_from < config.steps
    if config.vision_lr_scale == 0 and not tower_speeds_up:
        vision.requires_grad_(False)
    in_vision = {id(p) for p in vision.parameters()}
    groups = []  # (parameters, weight decay, in the tower)
    for in_tower, params in (
        (False, [p for p in model.parameters() if id(p) not in in_vision]),
        (True, list(vision.parameters())),
    ):
        trained = [p for p in params if p.requires_grad]
        groups += [
            ([p for p in trained if p.ndim > 1], config.weight_decay, in_tower),
            ([p for p in trained if p.ndim <= 1], 0.0, in_tower),
        ]
    merged = tower_token_px(model)
    heads = torch.nn.ModuleDict(
        {
            name: torch.nn.Linear(model.config.vision_config.out_hidden_size, len(SHAPE_ATTRIBUTES[name]))
            for name in config.shape_loss
        }
    )
    groups.append((list(heads.parameters()), 0.0, False))
    tower_out: dict[str, Any] = {}
    if heads:
        vision.register_forward_hook(lambda _m, _i, out: tower_out.update(tokens=out.pooler_output))
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": wd, "tower": in_tower} for ps, wd, in_tower in groups if ps],
        lr=config.lr,
        betas=(0.9, 0.98),
    )
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    encoded: dict[int, _EncodedExample] = {}  # filled on first use: a lazy example set is made as it is read
    order: list[int] = []
    t0 = time.perf_counter()
    evals = []
    loss_value = float("nan")
    recent: list[float] = []
    recent_shape: list[float] = []
    for step in range(config.steps):
        progress = min(1.0, max(0.0, (step - config.warmup) / max(1, config.steps - config.warmup)))
        scale = (
            (step + 1) / config.warmup
            if step < config.warmup
            else (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        )
        tower_full = config.vision_full_from is not None and step >= config.vision_full_from
        tower_share = 1.0 if tower_full else config.vision_lr_scale
        for group in optimizer.param_groups:
            group["lr"] = config.lr * scale * (tower_share if group["tower"] else 1.0)
        if len(order) < config.batch_size:
            epoch = list(range(len(examples)))
            rng.shuffle(epoch)
            order += epoch
        chosen = order[: config.batch_size]
        del order[: config.batch_size]
        new = [i for i in chosen if i not in encoded]
        encoded.update(zip(new, _encode_examples(reasoner, [examples[i] for i in new])))
        model.train()
        batch = _sft_batch([encoded[i] for i in chosen], reasoner.processor)
        inputs = {k: v.to(config.device) for k, v in batch.items()}
        loss = model(**inputs).loss
        total = loss
        if heads:
            shape_loss = _shape_loss(
                tower_out.pop("tokens"), [encoded[i] for i in chosen], heads, reasoner.frame // merged
            )
            total = loss + config.shape_loss_weight * shape_loss
            recent_shape = (recent_shape + [float(shape_loss.detach())])[-50:]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(loss.detach())
        recent = (recent + [loss_value])[-50:]
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            elapsed = time.perf_counter() - t0
            shape_part = f", shape loss {np.mean(recent_shape):.4f}" if heads else ""
            log(
                f"  sft step {step + 1}/{config.steps}: loss {np.mean(recent):.4f}{shape_part}, {elapsed:.0f}s"
            )
        if config.eval_every and config.eval_samples and (step + 1) % config.eval_every == 0:
            model.eval()
            metrics = (config.evaluate or evaluate_reasoner)(reasoner, config.eval_samples)
            evals.append((step + 1, metrics))
            log(f"  eval at step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds:
            log(f"  sft: time budget of {config.max_seconds:.0f}s reached at step {step + 1}")
            break
    _save_reasoner(reasoner, out_dir, "sft-warmup")
    return {
        "seconds": time.perf_counter() - t0,
        "steps": step + 1,
        "final_loss": float(np.mean(recent)),
        "final_shape_loss": float(np.mean(recent_shape)) if heads else None,
        "evals": evals,
    }


#: Accuracy rewards summed into the "accuracy reward" of the learning test (the paper's hard ones).
ACCURACY_REWARDS = ("bbox_iou", "bbox_l1", "points_l1")
FORMAT_REWARDS = ("thinking_format", "seg_format_strict")


def evaluate_reasoner(
    reasoner: Any,
    examples: Sequence[ReasonerExample],
    batch_size: int = 32,
    max_new_tokens: int = MAX_COMPLETION_TOKENS,
    *,
    sample: bool = False,
    samples_per_prompt: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """Answers of a :class:`segzero.reasoner.Reasoner` on examples, scored with the Seg-Zero rewards.

    Args:
        sample: draw answers at temperature 1 (what GRPO optimises: the policy's expected reward)
            instead of greedy decoding; ``samples_per_prompt`` answers per example, seeded by ``seed``.

    Returns:
        The mean of each reward in :data:`FORMAT_REWARDS` and :data:`ACCURACY_REWARDS`, ``accuracy``
        (their accuracy sum, in [0, 3]), ``box_iou`` (mean IoU of the predicted box, 0 when unparsed)
        and ``parsed`` (share of answers with a box).
    """
    import torch

    repeated = [ex for ex in examples for _ in range(samples_per_prompt if sample else 1)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        completions = generate_answers(reasoner, repeated, batch_size, max_new_tokens, do_sample=sample)
    return score_completions(completions, repeated)


def generate_answers(
    reasoner: Any,
    items: Sequence[Any],
    batch_size: int = 32,
    max_new_tokens: int = MAX_COMPLETION_TOKENS,
    *,
    do_sample: bool = False,
) -> list[str]:
    """The reasoner's completions for items with ``.image`` and ``.request`` (ShapeWorld samples or
    :class:`ReasonerExample`), ``batch_size`` per ``generate`` call, in order."""
    completions: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        completions += reasoner.generate(
            [item.image for item in chunk],
            [item.request for item in chunk],
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
        )
    return completions


#: Where :func:`answer_image_dependence` reads the reasoner's next-token distribution: before the
#: first digit of the box, the first token of the answer that needs the image.
BOX_PREFIX = '<answer>{"bbox": ['


def answer_image_dependence(
    reasoner: Any, images: Sequence[Any], requests: Sequence[str], prefix: str = BOX_PREFIX
) -> dict[str, float]:
    """How much a reasoner's answer depends on the image, and how much on the request.

    Every request is paired with every image; for each pair the next-token distribution after the
    chat prompt and ``prefix`` (teacher-forced) is read. Distances are total variation (0: the same
    distribution, 1: disjoint).

    Args:
        images: PIL images, any frame (resized to the reasoner's), at least two.
        requests: request texts, at least two.

    Returns:
        ``{"image": mean distance between two images under the same request, "request": mean distance
        between two requests under the same image}``. A reasoner that does not look at the image has
        ``image`` near 0 whatever its ``request``.
    """
    import torch

    from segzero.reasoner import reasoner_image

    if len(images) < 2 or len(requests) < 2:
        raise ValueError("answer_image_dependence needs at least two images and two requests")
    frames = [reasoner_image(img, reasoner.frame) for img in images]
    probs = []  # [request][image] -> (vocab,)
    for request in requests:
        texts = [reasoner.chat_text(request) + prefix] * len(frames)
        inputs = reasoner.processor(text=texts, images=frames, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = reasoner.model(**inputs.to(reasoner.device)).logits[:, -1].float()  # left padded
        probs.append(logits.softmax(-1))
    grid = torch.stack(probs).cpu().numpy()  # (requests, images, vocab)
    return {"image": mean_pairwise_tv(grid), "request": mean_pairwise_tv(grid.transpose(1, 0, 2))}


def mean_pairwise_tv(p: np.ndarray) -> float:
    """Mean total-variation distance between the distributions of a group, over groups.

    Args:
        p: float ``(groups, members, outcomes)``, each ``p[g, m]`` a distribution; at least two members.

    Returns:
        The mean over groups and over ordered pairs of distinct members of ``0.5 * |p[g, a] - p[g, b]|_1``.
    """
    groups, members = p.shape[:2]
    d = 0.5 * np.abs(p[:, :, None] - p[:, None, :]).sum(-1)  # the diagonal is 0
    return float(d.sum() / (groups * members * (members - 1)))


def score_completions(completions: Sequence[str], examples: Sequence[ReasonerExample]) -> dict[str, float]:
    """The metrics of :func:`evaluate_reasoner` for given completions."""
    from segzero.answer import parse_answer
    from segzero.rewards import REWARDS, GroundTruth, bbox_iou_soft

    sums: dict[str, float] = {name: 0.0 for name in (*FORMAT_REWARDS, *ACCURACY_REWARDS)}
    box_iou = parsed = 0.0
    for text, ex in zip(completions, examples):
        gt = GroundTruth.from_columns(ex.boxes, ex.points)
        for name in sums:
            sums[name] += REWARDS[name](text, gt)
        box_iou += bbox_iou_soft(text, gt)
        parsed += any(o.box is not None for o in parse_answer(text).objects)
    n = max(1, len(examples))
    out = {name: v / n for name, v in sums.items()}
    out["accuracy"] = sum(out[name] for name in ACCURACY_REWARDS)
    out["box_iou"] = box_iou / n
    out["parsed"] = parsed / n
    return out


# --------------------------------------------------------------------------- vision tower


#: Seed offset of the tower-pretraining scenes inside the train split (warm-up 0.., GRPO 5,000,000..).
TOWER_SEED_OFFSET = 7_000_000
#: Seed offset of its validation scenes in the val split (evaluations read val from 0).
TOWER_VAL_OFFSET = 50_000


@dataclass
class TowerPretrainConfig:
    """Dense pretraining of the reasoner's vision tower, before the warm-up (:func:`pretrain_tower`).

    The toy's stand-in for the pretrained vision tower a released Qwen2.5-VL starts from: through the
    warm-up's language loss alone the tiny tower learns colours and places in minutes but the kinds
    of shapes hardly at all (docs/shapeworld.md).

    Attributes:
        steps / batch_size: optimiser steps, scenes per step.
        lr / weight_decay / warmup: AdamW, linear warm-up over ``warmup`` steps then cosine to 5%.
        scenes: training scenes (split ``train`` from :data:`TOWER_SEED_OFFSET`), ``n_shapes`` shapes
            each; every fifth lets its shapes overlap.
        eval_scenes: validation scenes measured at the end (and every ``eval_every`` steps if > 0).
        seed / threads / device: as in :class:`SFTLoopConfig`.
    """

    steps: int = 5000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    scenes: int = 16000
    n_shapes: tuple[int, int] = (1, 4)
    eval_scenes: int = 300
    eval_every: int = 0
    seed: int = 0
    threads: int = 2
    device: str = "cpu"


@dataclass
class _TowerTargets:
    """Per-token targets of a batch (``B * grid * grid`` rows, row-major tokens per image)."""

    present: Any  # bool: a shape's box centre lies in the token
    attributes: dict[str, Any]  # name -> long, that shape's index (0 where none)
    boxes: Any  # float (n, 4): that shape's box, reasoner frame, divided by the frame


def _box_area(box: Sequence[int]) -> int:
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def tower_targets(samples: Sequence[Any], frame: int, merged: int) -> _TowerTargets:
    """Which shape each tower token holds: the one whose box centre lies under it (:func:`shape_labels`),
    the smaller box where two centres share a token, with its attributes and box."""
    import torch

    grid = frame // merged
    present = torch.zeros(len(samples), grid, grid, dtype=torch.bool)
    attributes = {name: torch.zeros(len(samples), grid, grid, dtype=torch.long) for name in SHAPE_ATTRIBUTES}
    boxes = torch.zeros(len(samples), grid, grid, 4)
    for i, sample in enumerate(samples):
        shapes = sample.extra["shapes"]
        labels = shape_labels(sample, frame, merged)
        # Largest box first, so that a smaller shape sharing a token overwrites it (the harder one).
        for k in sorted(range(len(shapes)), key=lambda k: -_box_area(shapes[k]["box"])):
            (rows, cols), shape_attributes = labels[k]
            row, col = rows[1], cols[1]
            present[i, row, col] = True
            for name, value in shape_attributes.items():
                attributes[name][i, row, col] = value
            boxes[i, row, col] = (
                torch.tensor(frame_box(sample, shapes[k], frame), dtype=torch.float32) / frame
            )
    return _TowerTargets(
        present.flatten(), {k: v.flatten() for k, v in attributes.items()}, boxes.reshape(-1, 4)
    )


def _tower_loss(tokens: Any, targets: _TowerTargets, heads: Any) -> tuple[Any, dict[str, float]]:
    """Sum of the heads' losses on a batch's tokens, and their accuracies (box: mean L1 in frame px / frame)."""
    import torch.nn.functional as F

    present = targets.present.to(tokens.device)
    on = tokens[present]
    object_logits = heads["object"](tokens)
    loss = F.cross_entropy(object_logits, present.long())
    metrics = {"object": float((object_logits.detach().argmax(-1) == present.long()).float().mean())}
    for name, labels in targets.attributes.items():
        logits, truth = heads[name](on), labels.to(tokens.device)[present]
        loss = loss + F.cross_entropy(logits, truth)
        metrics[name] = float((logits.argmax(-1) == truth).float().mean())
    box_error = F.l1_loss(heads["box"](on).sigmoid(), targets.boxes.to(tokens.device)[present])
    metrics["box"] = float(box_error.detach())
    return loss + 10 * box_error, metrics


def pretrain_tower(
    reasoner_dir: str | Path,
    out_dir: str | Path,
    config: TowerPretrainConfig | None = None,
    *,
    log: Log = _print,
) -> dict[str, Any]:
    """Teach a reasoner's vision tower what is where, then save the whole reasoner to ``out_dir``.

    For every merged output token of ``model.visual`` (what the language model reads), linear heads
    say whether a shape's box centre lies under it and, if so, that shape's kind, colour, size
    (:data:`SHAPE_ATTRIBUTES`) and box: a dense detection task, as a detector or a grounding model's
    tower would have learnt before it met language. Only the tower trains; the heads are dropped.

    Returns:
        ``{"seconds", "steps", "final_loss", "val", "out"}`` (``out``: the saved folder). ``val`` holds,
        on ``eval_scenes`` validation scenes, the share of tokens whose ``object`` is right, the share
        of shapes whose kind / colour / size is right, and ``box_px``, the mean box-corner error in
        frame pixels.
    """
    import torch

    from segzero.reasoner import reasoner_image
    from segzero.shapeworld.generator import make_split

    config = config or TowerPretrainConfig()
    if config.steps < 1 or config.batch_size < 1 or config.scenes < 1 or config.eval_scenes < 1:
        raise InputError("steps, batch_size, scenes and eval_scenes must all be at least 1")
    torch.set_num_threads(config.threads)
    reasoner = _load_reasoner(reasoner_dir, config.device)
    frame = reasoner.frame
    vision = reasoner.model.model.visual
    merged = tower_token_px(reasoner.model)
    width = reasoner.model.config.vision_config.out_hidden_size
    torch.manual_seed(config.seed)
    heads = torch.nn.ModuleDict(
        {"object": torch.nn.Linear(width, 2), "box": torch.nn.Linear(width, 4)}
        | {name: torch.nn.Linear(width, len(values)) for name, values in SHAPE_ATTRIBUTES.items()}
    ).to(config.device)
    params = list(vision.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def scenes(split: str, n: int, offset: int) -> list[Any]:
        options = {"n_shapes": config.n_shapes}
        return [
            next(
                make_split(split, 1, "referring", seed_offset=offset + i, allow_overlap=i % 5 == 0, **options)
            )
            for i in range(n)
        ]

    def tokens(batch: Sequence[Any]) -> Any:
        patches = reasoner.processor.image_processor(
            images=[reasoner_image(sample.image, frame) for sample in batch], return_tensors="pt"
        )
        out = vision(
            patches["pixel_values"].to(config.device), grid_thw=patches["image_grid_thw"].to(config.device)
        )
        return out.pooler_output

    t0 = time.perf_counter()
    # No more scenes than the steps read (a short run need not draw thousands).
    train = scenes("train", min(config.scenes, config.steps * config.batch_size), TOWER_SEED_OFFSET)
    val = scenes("val", config.eval_scenes, TOWER_VAL_OFFSET)
    val_targets = tower_targets(val, frame, merged)
    log(f"  tower: {len(train)} training scenes ({time.perf_counter() - t0:.0f}s)")

    def evaluate() -> dict[str, float]:
        vision.eval()
        with torch.no_grad():
            _, metrics = _tower_loss(tokens(val), val_targets, heads)
        metrics["box_px"] = metrics.pop("box") * frame
        return metrics

    rng = random.Random(config.seed)
    recent: list[float] = []
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config.steps, config.lr, config.warmup)
        batch = [train[rng.randrange(len(train))] for _ in range(config.batch_size)]
        vision.train()
        loss, _ = _tower_loss(tokens(batch), tower_targets(batch, frame, merged), heads)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        recent = (recent + [float(loss.detach())])[-50:]
        if (step + 1) % 250 == 0 or step + 1 == config.steps:
            log(
                f"  tower step {step + 1}/{config.steps}: loss {np.mean(recent):.3f}, "
                f"{time.perf_counter() - t0:.0f}s"
            )
        if config.eval_every and (step + 1) % config.eval_every == 0:
            log("  tower eval: " + ", ".join(f"{k} {v:.3f}" for k, v in evaluate().items()))
    val_metrics = evaluate()
    log("  tower eval: " + ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items()))
    out = _save_reasoner(reasoner, out_dir, "tower-pretrained")
    return {
        "seconds": time.perf_counter() - t0,
        "steps": config.steps,
        "final_loss": float(np.mean(recent)),
        "val": val_metrics,
        "out": out,
    }


# --------------------------------------------------------------------------- all stages


#: Reasoning templates that no training stage sees, so that they stay out of domain: the three that name
#: one shape and mean another (the GRPO learning test's, tests/test_shapeworld_learning.py).
HELD_OUT_TEMPLATES = ("closest_to_kind", "furthest_from_kind", "same_colour_as_kind")
#: The reasoning templates the knowledge stage teaches (:attr:`ShapeWorldTrainConfig.knowledge`).
KNOWLEDGE_TEMPLATES = tuple(t for t in sorted(TEMPLATES["reasoning"]) if t not in HELD_OUT_TEMPLATES)
#: Seed offset of the knowledge stage's reasoning samples inside the train split.
KNOWLEDGE_SEED_OFFSET = 2_000_000
#: The knowledge stage's thinking (:data:`THINKING`): the reasoning written out before the choice.
KNOWLEDGE_THINKING = "scene-explain"


@dataclass
class ShapeWorldTrainConfig:
    """Everything ``segzero shapeworld train-models`` does, stage by stage.

    Attributes:
        segmenter: the SAM2 stage.
        reasoner: the reasoner's size and tokenizer.
        warmup: the supervised warm-up loop; ``warmup_samples`` referring training samples feed it, on
            scenes of ``warmup_n_shapes`` shapes (one-shape scenes teach *where* before *which*), with
            ``warmup_thinking`` as the target's thinking.
        grpo_recipe: the GRPO recipe run through ``segzero train grpo`` (the real training entry point).
        grpo_samples: referring training samples in the GRPO prepared dataset (disjoint from the warm-up's);
            ``None`` gives what the recipe's steps read, each once (:func:`grpo_requests_read`).
        grpo_overrides: extra ``key=value`` recipe overrides (e.g. ``max_steps=4`` for a quick run).
    """

    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)
    reasoner: ReasonerBuildConfig = field(
        # Rotary: theta 1e4 with no time bands, 2 row bands and 14 column bands (the released 1e6 and
        # [4, 6, 6] turn a column step by at most 1.8e-4 rad in a 32-wide head; docs/shapeworld.md).
        # The vision tower is 4 x 128 (4 heads), the size its dense pretraining was run at (session 12).
        default_factory=lambda: ReasonerBuildConfig(
            frame=112,
            hidden_size=128,
            num_heads=4,
            vision_depth=4,
            vision_hidden=128,
            vision_heads=4,
            rope_theta=1e4,
            mrope_section=(0, 2, 14),
        )
    )
    # The tower, pretrained (``tower``), stays fixed through the warm-up: 7000 steps at 0 lift referring
    # gIoU to 0.549 where 4000 at 0.1x reach 0.515 (docs/shapeworld.md, sessions 12-13).
    warmup: SFTLoopConfig = field(default_factory=lambda: SFTLoopConfig(steps=7000, vision_lr_scale=0.0))
    #: Dense pretraining of the vision tower before the warm-up (:func:`pretrain_tower`); ``None`` skips it.
    tower: TowerPretrainConfig | None = field(default_factory=TowerPretrainConfig)
    #: The warm-up's thinking (:data:`THINKING`): the scene listing with the request repeated before the
    #: choice, which lets the language model read it there (session 13).
    warmup_thinking: str = "scene-echo"
    warmup_samples: int = 8000
    warmup_n_shapes: tuple[int, int] = (1, 4)
    #: A second supervised stage after the warm-up, on referring and reasoning requests with their
    #: reasoning written out (``"scene-explain"``): the toy's stand-in for the world knowledge a
    #: pretrained language model brings (which shapes roll, what colour a lemon is); ``None`` skips it.
    knowledge: SFTLoopConfig | None = field(
        default_factory=lambda: SFTLoopConfig(steps=4000, lr=5e-4, vision_lr_scale=0.0)
    )
    #: The reasoning templates the knowledge stage teaches; the rest stay out of domain for every stage.
    knowledge_templates: tuple[str, ...] = KNOWLEDGE_TEMPLATES
    #: Of every ``sum(knowledge_mix)`` knowledge examples, this many referring, then this many reasoning.
    knowledge_mix: tuple[int, int] = (2, 3)
    knowledge_samples: tuple[int, int] = (8000, 12000)
    grpo_recipe: str = "recipes/shapeworld_grpo.yaml"
    grpo_samples: int | None = None
    grpo_overrides: list[str] = field(default_factory=list)

    @property
    def final_thinking(self) -> str:
        """The thinking of the last supervised stage: the form the checkpoint GRPO starts from writes."""
        return KNOWLEDGE_THINKING if self.knowledge is not None else self.warmup_thinking


def grpo_requests_read(recipe: str | Path, overrides: Sequence[str] = ()) -> int:
    """How many requests a single-process GRPO run of ``recipe`` (with ``overrides``) reads:
    ``max_steps`` x completions per step / ``num_generations``.

    The recipe is read and checked as ``segzero train grpo`` reads it (:func:`segzero.train.config.load_config`),
    so a recipe that run would refuse fails here too.
    """
    from segzero.train.config import load_config

    training = load_config("grpo", recipe, list(overrides)).training
    if training.max_steps <= 0:
        raise InputError(f"The GRPO recipe {recipe} must set max_steps (> 0) to size its data.")
    per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps
    return training.max_steps * per_step // training.num_generations


#: Seed offset of the GRPO training samples inside the train split (the warm-up uses 0..).
GRPO_SEED_OFFSET = 5_000_000


def prepare_grpo_data(
    path: str | Path, n: int, frame: int, family: str = "referring", templates: Sequence[str] = ()
) -> Path:
    """Write ``n`` training samples of ``family`` as a prepared dataset (prompts in the reasoner ``frame``).

    With ``templates`` sample ``i`` uses ``templates[i % len(templates)]``; otherwise each draws its own.
    """
    import shutil

    from segzero.data.prepared import save_prepared
    from segzero.shapeworld.generator import make_split

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    samples = make_split("train", n, family, seed_offset=GRPO_SEED_OFFSET, templates=templates)
    save_prepared(samples, path, frame=frame)
    return path


def run_grpo(
    recipe: str | Path,
    model: str | Path,
    dataset: str | Path,
    output_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    log: Log = _print,
) -> Path:
    """Run ``segzero train grpo --config RECIPE`` in a child process; return the trained ``final`` folder.

    A child process keeps the trainer's memory and threads apart from the caller's, and runs exactly
    what a user types.
    """
    import subprocess
    import sys

    if not Path(recipe).is_file():
        raise FileNotFoundError(
            f"the GRPO recipe {recipe} does not exist (run from the repository root, or pass --recipe)"
        )
    # The `segzero` entry point with the training commands registered (they need TRL, an extra).
    entry = "from segzero.cli import main, train; main()"
    command = [
        sys.executable,
        "-c",
        entry,
        "train",
        "grpo",
        "--config",
        str(recipe),
        "--set",
        f"model_name_or_path={model}",
        "--set",
        f"dataset_path={dataset}",
        "--output-dir",
        str(output_dir),
        "--resume",
        "never",
    ]
    for item in overrides:
        command += ["--set", item]
    log("  $ segzero " + " ".join(command[3:]))
    subprocess.run(command, check=True)
    return Path(output_dir) / "final"


def knowledge_examples(config: ShapeWorldTrainConfig) -> InterleavedExamples:
    """The knowledge stage's examples: referring requests on the warm-up's scenes and reasoning requests
    of ``config.knowledge_templates`` (cycled) on scenes of their own, interleaved by
    ``config.knowledge_mix``, all with the :data:`KNOWLEDGE_THINKING` thinking."""
    unknown = sorted(set(config.knowledge_templates) - set(TEMPLATES["reasoning"]))
    if unknown or not config.knowledge_templates:
        raise InputError(
            f"knowledge_templates must be reasoning templates ({sorted(TEMPLATES['reasoning'])}); "
            f"got {list(config.knowledge_templates)}"
        )
    n_referring, n_reasoning = config.knowledge_samples
    frame = config.reasoner.frame
    referring = ShapeWorldExamples(
        "train", n_referring, "referring", frame, thinking=KNOWLEDGE_THINKING, n_shapes=config.warmup_n_shapes
    )
    reasoning = ShapeWorldExamples(
        "train",
        n_reasoning,
        "reasoning",
        frame,
        thinking=KNOWLEDGE_THINKING,
        seed_offset=KNOWLEDGE_SEED_OFFSET,
        templates=config.knowledge_templates,
    )
    return InterleavedExamples([referring, reasoning], config.knowledge_mix)


def train_all(
    out_dir: str | Path,
    config: ShapeWorldTrainConfig | None = None,
    *,
    stages: Sequence[str] = ("segmenter", "reasoner"),
    log: Log = _print,
) -> dict[str, float]:
    """Reproduce the ShapeWorld models end to end into ``out_dir``; returns seconds per stage.

    Writes ``segmenter/``, ``reasoner-init/`` (random), ``reasoner-tower/`` (after the tower's
    pretraining, when ``config.tower`` is set), ``reasoner-referring/`` (after the referring warm-up, when
    ``config.knowledge`` is set), ``reasoner-warmup/`` (after the supervised stages: the one GRPO starts from),
    ``reasoner/`` (after GRPO), the GRPO run in ``grpo/`` and its data in ``data/grpo``, and
    ``timings.json``.
    """
    import shutil

    config = config or ShapeWorldTrainConfig()
    if config.warmup_thinking not in THINKING:
        raise InputError(f"warmup_thinking must be one of {THINKING}, got {config.warmup_thinking!r}")
    # Made (lazily, so at no cost) and so checked before any stage runs.
    knowledge_set = knowledge_examples(config) if config.knowledge is not None else None
    out = Path(out_dir)
    warm, grpo_data, grpo_run = out / "reasoner-warmup", out / "data" / "grpo", out / "grpo"
    if "reasoner" in stages:
        # Read (and checked) first, so a recipe GRPO would refuse fails before
        # hours of the other stages.
        grpo_overrides = [
            f"model_name_or_path={warm}",
            f"dataset_path={grpo_data}",
            f"output_dir={grpo_run}",
            *config.grpo_overrides,
        ]
        n_grpo = config.grpo_samples or grpo_requests_read(config.grpo_recipe, grpo_overrides)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[{name}]")
        t = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - t
        log(f"[{name}] done in {timings[name]:.0f}s")
        return value

    if "segmenter" in stages:
        stage("segmenter", lambda: train_segmenter(out / "segmenter", config.segmenter, log=log))
    if "reasoner" in stages:
        frame = config.reasoner.frame
        start = stage(
            "reasoner-build", lambda: build_shapeworld_reasoner(out / "reasoner-init", config.reasoner)
        )
        if config.tower is not None:
            tower = config.tower
            start = stage("tower", lambda: pretrain_tower(start, out / "reasoner-tower", tower, log=log))[
                "out"
            ]
        # Made as the warm-up reads them (a few ms each), so their time is part of that stage's.
        examples = ShapeWorldExamples(
            "train",
            config.warmup_samples,
            "referring",
            frame,
            thinking=config.warmup_thinking,
            n_shapes=config.warmup_n_shapes,
        )
        knowledge = config.knowledge
        referring_warm = out / "reasoner-referring" if knowledge is not None else warm
        stage(
            "warmup-sft",
            lambda: sft_loop(start, examples, referring_warm, config.warmup, log=log),
        )
        if knowledge is not None:
            stage(
                "knowledge-sft",
                lambda: sft_loop(referring_warm, knowledge_set, warm, knowledge, log=log),
            )
        stage("grpo-data", lambda: prepare_grpo_data(grpo_data, n_grpo, frame))
        if grpo_run.exists():
            shutil.rmtree(grpo_run)
        final = stage(
            "grpo",
            lambda: run_grpo(
                config.grpo_recipe,
                warm,
                grpo_data,
                grpo_run,
                config.grpo_overrides,
                log=log,
            ),
        )
        if (out / "reasoner").exists():
            shutil.rmtree(out / "reasoner")
        shutil.copytree(final, out / "reasoner", ignore=shutil.ignore_patterns("training_args.bin"))
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    log("Stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return timings
