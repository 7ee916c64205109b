"""Stage 3: dense pretraining of the reasoner's vision tower, before the warm-up.

The toy's stand-in for the pretrained vision tower a released Qwen2.5-VL starts from: trained only
through the warm-up's language loss, the tiny tower learns colours and places but hardly the kinds of
shapes. Here it first learns what is where, as a detector's backbone would, and is then held fixed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segzero.errors import InputError
from segzero.shapeworld.training.common import (
    TOWER_SEED_OFFSET,
    TOWER_VAL_OFFSET,
    Log,
    lr_at,
    print_log,
)
from segzero.shapeworld.training.examples import SHAPE_ATTRIBUTES, frame_box, shape_labels
from segzero.shapeworld.training.reasoner import load_reasoner, save_reasoner, tower_token_px


@dataclass
class TowerPretrainConfig:
    """Dense pretraining of the vision tower (``tower.*`` settings of ``train-models``)."""

    steps: int = field(default=5000, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=32, metadata={"help": "Scenes per step."})
    lr: float = field(
        default=1e-3, metadata={"help": "AdamW peak learning rate (cosine down to 5% after warmup)."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup: int = field(default=100, metadata={"help": "Steps of linear warm-up of the learning rate."})
    scenes: int = field(
        default=16000,
        metadata={
            "help": "Training scenes (no more than the steps read); every fifth lets its shapes overlap."
        },
    )
    n_shapes: tuple[int, int] = field(default=(1, 4), metadata={"help": "Least and most shapes per scene."})
    eval_scenes: int = field(default=300, metadata={"help": "Validation scenes measured at the end."})
    eval_every: int = field(
        default=0, metadata={"help": "Also measure them every this many steps (0: never)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds the heads and the scenes drawn."})
    threads: int = field(default=2, metadata={"help": "Torch CPU threads."})
    device: str = field(default="cpu", metadata={"help": "Where the tower trains: cpu or cuda."})

    def check(self, name: str = "") -> None:
        """Raise :class:`InputError` for settings no run can use, naming them as ``name.field``."""
        prefix = f"{name}." if name else ""
        for key in ("steps", "batch_size", "scenes", "eval_scenes"):
            if getattr(self, key) < 1:
                raise InputError(f"{prefix}{key} must be at least 1, got {getattr(self, key)}.")


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
    log: Log = print_log,
) -> dict[str, Any]:
    """Teach a reasoner's vision tower what is where, then save the whole reasoner to ``out_dir``.

    For every merged output token of ``model.visual`` (what the language model reads), linear heads
    say whether a shape's box centre lies under it and, if so, that shape's kind, colour, size
    (:data:`SHAPE_ATTRIBUTES`) and box: a dense detection task, as a detector or a grounding model's
    tower would have learnt before it met language. A separate object head keeps kinds learnable (in
    one softmax with "no shape", which most tokens hold, they were not). Only the tower trains; the
    heads are dropped.

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
    config.check()
    torch.set_num_threads(config.threads)
    reasoner = load_reasoner(reasoner_dir, config.device)
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
            group["lr"] = lr_at(step, config.steps, config.lr, config.warmup)
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
    out = save_reasoner(reasoner, out_dir, "tower-pretrained")
    return {
        "seconds": time.perf_counter() - t0,
        "steps": config.steps,
        "final_loss": float(np.mean(recent)),
        "val": val_metrics,
        "out": out,
    }
