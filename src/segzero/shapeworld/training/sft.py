"""Stages 4 and 5: the supervised loop of the warm-up and the knowledge stage.

Completion-only cross-entropy on :class:`~segzero.shapeworld.training.examples.ReasonerExample` targets,
AdamW with a cosine schedule, the vision tower at its own learning rate (held fixed at 0), and optional
auxiliary heads that read each shape's attributes from the tower.

It is its own loop, not ``segzero train sft``: that command trains the answer without a thinking part
(real datasets hold no reasoning text), while the GRPO stage's ``seg_zero`` prompt needs a reasoner that
already thinks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segzero.defaults import DEFAULT_PROMPT
from segzero.errors import InputError
from segzero.prompts import get_prompt
from segzero.shapeworld.training.common import Log, print_log
from segzero.shapeworld.training.examples import SHAPE_ATTRIBUTES, ReasonerExample, TokenSpan, shape_labels
from segzero.shapeworld.training.reasoner import load_reasoner, save_reasoner, tower_token_px


@dataclass
class SFTLoopConfig:
    """The supervised loop (``warmup.*`` and ``knowledge.*`` settings of ``train-models``)."""

    steps: int = field(default=1500, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=16, metadata={"help": "Examples per step."})
    lr: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate."})
    min_lr_ratio: float = field(
        default=0.05, metadata={"help": "Where the cosine schedule ends, as a share of lr."}
    )
    warmup: int = field(default=50, metadata={"help": "Steps of linear warm-up of the learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (matrices only)."})
    seed: int = field(default=0, metadata={"help": "Seeds the order of the examples and the heads."})
    threads: int = field(default=2, metadata={"help": "Torch CPU threads."})
    device: str = field(default="cpu", metadata={"help": "Where the reasoner trains: cpu or cuda."})
    max_seconds: float | None = field(
        default=None,
        metadata={"help": "Stop after this much wall time (the model so far is saved); null: no limit."},
    )
    vision_lr_scale: float = field(
        default=1.0,
        metadata={
            "help": "The vision tower's (model.visual) learning rate as a share of lr; 0 keeps it at its "
            "starting weights (no gradient through it at all)."
        },
    )
    vision_full_from: int | None = field(
        default=None,
        metadata={
            "help": "The step from which the tower trains at the full rate (vision_lr_scale only before it); "
            "null keeps vision_lr_scale throughout."
        },
    )
    shape_loss: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Shape attributes (kind, colour, size) that auxiliary linear heads must read from the "
            "tower: for every scene shape, from the mean of the tower's output tokens under its box. The "
            "heads are dropped after the loop; they give the tower a direct gradient for what the language "
            "model must name. Empty: off."
        },
    )
    prompt: str = field(
        default=DEFAULT_PROMPT,
        metadata={
            "help": "The prompt variant (segzero.prompts) the examples are asked with, and the one the saved "
            "reasoner's segzero.json records: e.g. generalized for list answers and [] (their examples "
            "made with that answer form)."
        },
    )
    shape_loss_weight: float = field(
        default=1.0, metadata={"help": "The auxiliary loss's weight beside the completion cross-entropy."}
    )
    eval_every: int = field(
        default=0,
        metadata={
            "help": "Run `evaluate` on `eval_samples` every this many steps (0: never).",
            "setting": False,
        },
    )
    eval_samples: Sequence[Any] = field(
        default_factory=list, metadata={"help": "Examples `evaluate` scores.", "setting": False}
    )
    evaluate: Callable[[Any, Sequence[Any]], dict[str, float]] | None = field(
        default=None,
        metadata={
            "help": "(reasoner, eval_samples) -> metrics, run every eval_every steps "
            "(e.g. evaluate_reasoner of benchmarks/shapeworld_probes.py).",
            "setting": False,
        },
    )

    def check(self, name: str = "") -> None:
        """Raise :class:`InputError` for settings no run can use, naming them as ``name.field``."""
        prefix = f"{name}." if name else ""
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise InputError(f"{prefix}{key} must be at least 1, got {getattr(self, key)}.")
        if self.vision_lr_scale < 0:
            raise InputError(f"{prefix}vision_lr_scale must be >= 0, got {self.vision_lr_scale}.")
        if self.vision_full_from is not None and self.vision_full_from < 0:
            raise InputError(f"{prefix}vision_full_from must be >= 0, got {self.vision_full_from}.")
        check_shape_loss(self.shape_loss)
        get_prompt(self.prompt)
        if self.eval_every and self.eval_samples and self.evaluate is None:
            raise InputError(f"{prefix}eval_every needs an evaluate function to run on eval_samples.")


def check_shape_loss(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple if each is one of :data:`SHAPE_ATTRIBUTES`, else an :class:`InputError`."""
    unknown = sorted(set(names) - set(SHAPE_ATTRIBUTES))
    if unknown:
        raise InputError(f"shape_loss names unknown attributes {unknown}; known: {sorted(SHAPE_ATTRIBUTES)}")
    return tuple(names)


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


def _encode_examples(
    reasoner: Any, examples: Sequence[ReasonerExample], prompt: str = DEFAULT_PROMPT
) -> list[_EncodedExample]:
    """Tokenise examples (chat prompt of variant ``prompt`` + completion + eos) the way the processor does
    with their images."""
    from segzero.reasoner import reasoner_image

    processor = reasoner.processor
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token
    out = []
    for ex in examples:
        text = reasoner.chat_text(ex.request, prompt) + ex.completion + eos
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


def sft_loop(
    reasoner_dir: str | Path,
    examples: Sequence[ReasonerExample],
    out_dir: str | Path,
    config: SFTLoopConfig | None = None,
    *,
    log: Log = print_log,
) -> dict[str, Any]:
    """Supervised training of a reasoner folder on ``examples``, saved (with ``segzero.json``) to ``out_dir``.

    Returns:
        ``{"seconds", "steps", "final_loss", "final_shape_loss", "evals": [(step, metrics), ...]}``
        (``final_shape_loss``: the auxiliary loss, ``None`` without one).
    """
    import torch

    config = config or SFTLoopConfig()
    config.check()
    torch.set_num_threads(config.threads)
    reasoner = load_reasoner(reasoner_dir, config.device)
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
        encoded.update(zip(new, _encode_examples(reasoner, [examples[i] for i in new], config.prompt)))
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
            metrics = config.evaluate(reasoner, config.eval_samples)
            evals.append((step + 1, metrics))
            log(f"  eval at step {step + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds:
            log(f"  sft: time budget of {config.max_seconds:.0f}s reached at step {step + 1}")
            break
    save_reasoner(reasoner, out_dir, "sft-warmup", config.prompt)
    return {
        "seconds": time.perf_counter() - t0,
        "steps": step + 1,
        "final_loss": float(np.mean(recent)),
        "final_shape_loss": float(np.mean(recent_shape)) if heads else None,
        "evals": evals,
    }
