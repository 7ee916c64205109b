"""Stage 1: the mini SAM2, built at toy size and trained on ShapeWorld objects from box and point prompts.

The paper's SAM2 is pretrained and frozen; here it must first be made, by its own short loop: every
shape of the training scenes is an object, each step prompts a batch of them with one prompting mode
and minimises SAM's multimask loss (:func:`_segmenter_loss`).

Frames: prompts are in image pixels (``size x size`` scenes), scaled into SAM2's ``image_size`` input.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segzero.errors import InputError
from segzero.geometry import mask_prompts
from segzero.shapeworld.generator import DEFAULT_SIZE, SCENES_PER_SEED, SPLIT_SEEDS, generate_scene
from segzero.shapeworld.training.common import Log, lr_at, print_log


@dataclass
class SegmenterTrainConfig:
    """How the mini SAM2 is built and trained (``segmenter.*`` settings of ``train-models``)."""

    image_size: int = field(
        default=128,
        metadata={
            "help": "Side of SAM2's square input (a multiple of 32); masks come out at a quarter of it."
        },
    )
    hidden_size: int = field(
        default=64, metadata={"help": "Width of the FPN, prompt encoder and mask decoder."}
    )
    stage_dims: tuple[int, int, int, int] = field(
        default=(16, 32, 64, 128), metadata={"help": "Hiera width per stage."}
    )
    stage_heads: tuple[int, int, int, int] = field(
        default=(1, 1, 2, 2), metadata={"help": "Hiera heads per stage."}
    )
    scenes: int = field(
        default=1500, metadata={"help": "Training scenes; every shape of a scene is an object."}
    )
    overlap_fraction: float = field(
        default=0.2, metadata={"help": "Share of training scenes whose shapes may overlap (occluded masks)."}
    )
    n_shapes: tuple[int, int] = field(
        default=(2, 4),
        metadata={
            "help": "Least and most shapes per training scene. Busy scenes make 'segment every shape' a poor "
            "answer, which pushes the decoder to use the prompts."
        },
    )
    size: int = field(default=DEFAULT_SIZE, metadata={"help": "Side of the ShapeWorld scenes, in pixels."})
    steps: int = field(default=3000, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=16, metadata={"help": "Objects per step."})
    lr: float = field(
        default=1e-3, metadata={"help": "AdamW peak learning rate (cosine decay after 50 warm-up steps)."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (matrices only)."})
    mode_weights: tuple[float, float, float] = field(
        default=(0.6, 0.2, 0.2),
        metadata={
            "help": "How often a step prompts with box + points, box only, points only (Seg-Zero's answer "
            "gives box and two points; the others keep the model usable for the ablations)."
        },
    )
    box_jitter: float = field(
        default=0.06,
        metadata={
            "help": "Standard deviation of box-corner noise, as a share of the box side (the reasoner's "
            "boxes are never exact)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds the weights, the objects drawn and the prompts."})
    threads: int = field(default=2, metadata={"help": "Torch CPU threads."})
    device: str = field(default="cpu", metadata={"help": "Where the model trains: cpu or cuda."})
    max_seconds: float | None = field(
        default=None,
        metadata={"help": "Stop after this much wall time (the model so far is saved); null: no limit."},
    )
    init_from: str | None = field(
        default=None,
        metadata={"help": "Continue from the weights of this segmenter folder instead of a random build."},
    )

    def check(self, name: str = "") -> None:
        """Raise :class:`InputError` for settings no run can use, naming them as ``name.field``."""
        prefix = f"{name}." if name else ""
        for key in ("steps", "batch_size", "scenes"):
            if getattr(self, key) < 1:
                raise InputError(f"{prefix}{key} must be at least 1, got {getattr(self, key)}.")


@dataclass
class SegmenterObject:
    """One object: its scene's image, its mask, and its Seg-Zero prompts (image frame)."""

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
) -> list[SegmenterObject]:
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
            out.append(SegmenterObject(scene.image, shape.mask, box, points))
    return out


def _jitter_box(box: Sequence[int], sigma: float, size: int, rng: random.Random) -> list[float]:
    x1, y1, x2, y2 = box
    sx, sy = sigma * (x2 - x1 + 1), sigma * (y2 - y1 + 1)
    out = [x1 + rng.gauss(0, sx), y1 + rng.gauss(0, sy), x2 + rng.gauss(0, sx), y2 + rng.gauss(0, sy)]
    out = [min(max(v, 0.0), size - 1.0) for v in out]
    return [min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])]


def _inner_points(obj: SegmenterObject, n: int, rng: random.Random) -> list[list[float]]:
    """Seg-Zero's two inscribed-circle centres half the time, otherwise random pixels of the mask."""
    if rng.random() < 0.5:
        return [list(map(float, p)) for p in obj.points[:n]]
    ys, xs = np.nonzero(obj.mask)
    picks = [rng.randrange(len(xs)) for _ in range(n)]
    return [[float(xs[k]), float(ys[k])] for k in picks]


def _segmenter_batch(
    objects: Sequence[SegmenterObject], mode: str, config: SegmenterTrainConfig, rng: random.Random
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
    must then learn to relate two unrelated bases before prompts mean anything (a long plateau where it
    segments every shape at once).
    """
    import torch

    with torch.no_grad():
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding
        )


def train_segmenter(
    out_dir: str | Path, config: SegmenterTrainConfig | None = None, *, log: Log = print_log
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
    config.check()
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

    def pixels(obj: SegmenterObject) -> Any:
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
            group["lr"] = lr_at(step, config.steps, config.lr)
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
