"""Contact sheet of a run: its k worst and k best samples by IoU, as in Figure 6 of the paper.

Each sample is a cell of three panels (image; ground truth; prediction with its boxes and
points) over a caption (IoU, request, start of the reasoning). Ignore pixels are hatched grey in
both overlays: they count neither for nor against the prediction.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segzero.data.records import Sample
from segzero.defaults import IGNORE
from segzero.errors import DatasetError, InputError
from segzero.frames import Frame, ObjectPrompt, map_object
from segzero.images import load_image
from segzero.masks import decode_rle, draw_overlay

#: ``load_sample(id) -> (RGB image, gt uint8 (H, W) 0/1/255, predicted bool (H, W) or None)``.
LoadSample = Callable[[str], tuple[Image.Image, np.ndarray, np.ndarray | None]]

PANEL = 240  # side of the square each panel is fitted into, in pixels
GAP = 8
CAPTION_LINES = 7
FONT_SIZE = 13
LINE_HEIGHT = 16
GT_COLOR = (40, 200, 80)
PRED_COLOR = (255, 64, 64)
IGNORE_COLOR = (110, 110, 110)
UNREADABLE_COLOR = (170, 170, 170)  # stands for an image that cannot be decoded


def select_worst_best(records: Iterable[Mapping[str, Any]], k: int) -> tuple[list[Mapping], list[Mapping]]:
    """The ``k`` lowest-IoU records (worst first) and, among the rest, the ``k`` highest (best first)."""
    ordered = sorted(records, key=lambda r: (r["iou"], r["id"]))
    worst = ordered[:k]
    best = ordered[len(worst) :][::-1][:k]
    return worst, best


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _hatch(image: Image.Image, region: np.ndarray) -> Image.Image:
    """Wash ``region`` grey and cross it with diagonal stripes."""
    if not region.any():
        return image
    arr = np.asarray(image.convert("RGB")).copy()
    h, w = region.shape
    stripes = (np.add.outer(np.arange(h, dtype=np.int32), np.arange(w, dtype=np.int32)) // 3) % 3 == 0
    arr[region] = (0.4 * arr[region] + 0.6 * np.array((200, 200, 200))).astype(np.uint8)
    arr[region & stripes] = IGNORE_COLOR
    return Image.fromarray(arr)


def _objects(record: Mapping[str, Any], size: tuple[int, int]) -> list[ObjectPrompt]:
    """The record's objects as prompts in the pixels of its image, of ``size`` ``(width, height)``."""
    frame = Frame.image(size)
    return [
        ObjectPrompt.from_lists(obj.get("box"), obj.get("points") or [], frame)
        for obj in record.get("objects") or []
    ]


def _panels(
    record: Mapping[str, Any], image: Image.Image, gt: np.ndarray, pred: np.ndarray | None
) -> list[Image.Image]:
    """Image, ground-truth overlay and prediction overlay, each shrunk to fit PANEL x PANEL."""
    w, h = image.size
    if gt.shape != (h, w) or (pred is not None and pred.shape != (h, w)):
        raise DatasetError(
            f"Sample {record['id']!r}: image is {w}x{h} but its masks are "
            f"{gt.shape[1]}x{gt.shape[0]}{'' if pred is None else f' and {pred.shape[1]}x{pred.shape[0]}'}."
        )
    scale = PANEL / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    small_gt = np.asarray(Image.fromarray(gt.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    small_pred = np.zeros(small_gt.shape, dtype=bool)
    if pred is not None:
        plane = Image.fromarray(pred.astype(np.uint8) * 255)
        small_pred = np.asarray(plane.resize(size, Image.Resampling.NEAREST)) > 0
    objects = _objects(record, (w, h))
    if size != (w, h):
        objects = [map_object(o, Frame.image(size)) for o in objects]
    ignore = small_gt == IGNORE
    gt_panel = _hatch(draw_overlay(small, small_gt == 1, color=GT_COLOR), ignore)
    pred_panel = _hatch(draw_overlay(small, small_pred, objects, color=PRED_COLOR), ignore)
    return [small, gt_panel, pred_panel]


def _caption(record: Mapping[str, Any], title: str, width_chars: int) -> list[str]:
    status = record.get("parse_status", "")
    head = f"{title}  IoU {record['iou']:.3f}  {record['id']}" + (f"  [{status}]" if status != "ok" else "")
    text = [f"Request: {record.get('request', '')}"]
    if record.get("error"):
        text.append(f"Error: {record['error']}")
    text.append(f"Thinking: {record.get('thinking') or '(none)'}")
    lines = [head] + [w for para in text for w in textwrap.wrap(" ".join(para.split()), width_chars) or [""]]
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        lines[-1] = lines[-1][: max(0, width_chars - 3)] + "..."
    return lines


def _cell(record: Mapping[str, Any], title: str, load_sample: LoadSample, font) -> Image.Image:
    image, gt, pred = load_sample(record["id"])
    panels = _panels(record, image, np.asarray(gt), None if pred is None else np.asarray(pred, dtype=bool))
    width = 3 * PANEL + 2 * GAP
    cell = Image.new("RGB", (width, PANEL + LINE_HEIGHT + CAPTION_LINES * LINE_HEIGHT + GAP), "white")
    draw = ImageDraw.Draw(cell)
    for i, (panel, label) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
        x = i * (PANEL + GAP)
        cell.paste(panel, (x + (PANEL - panel.width) // 2, LINE_HEIGHT + (PANEL - panel.height) // 2))
        draw.text((x, 0), label, fill=(90, 90, 90), font=font)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = max(20, int(width * len(alphabet) / draw.textlength(alphabet, font=font)))
    y = LINE_HEIGHT + PANEL + GAP // 2
    for n, line in enumerate(_caption(record, title, chars)):
        draw.text((0, y + n * LINE_HEIGHT), line, fill=(0, 0, 0) if n else (150, 0, 0), font=font)
    return cell


def render_contact_sheet(
    records: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    load_sample_fn: LoadSample,
    out_png: str | os.PathLike[str],
    k: int = 8,
) -> Path:
    """Draw the ``k`` worst samples (left column) and ``k`` best (right column) of a run into a PNG.

    Args:
        records: result records (each with ``id``, ``iou``, ``request``, ``thinking``, ``objects``
            in the image frame, ``parse_status``), or ``load_results`` output.
        load_sample_fn: ``id -> (image, gt uint8 0/1/255, predicted bool mask or None)``.
        out_png: where to write the sheet.
        k: samples per column.

    Returns:
        The path written.

    Raises:
        InputError: no records, or ``k < 1``.
    """
    if isinstance(records, Mapping):
        records = records.values()
    records = list(records)
    if not records:
        raise InputError("The run has no results yet, so there is nothing to draw.")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}.")
    worst, best = select_worst_best(records, k)
    font = _font()
    columns = []
    for name, chosen in (("Worst", worst), ("Best", best)):
        if chosen:
            cells = [_cell(r, f"{name.lower()} #{i + 1}", load_sample_fn, font) for i, r in enumerate(chosen)]
            columns.append((f"{name} {len(chosen)} by IoU", cells))
    cell_w, cell_h = columns[0][1][0].size
    header = 2 * LINE_HEIGHT
    width = len(columns) * (cell_w + 3 * GAP) + GAP
    height = header + max(len(cells) for _, cells in columns) * (cell_h + 2 * GAP)
    sheet = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    title_font = _font(FONT_SIZE + 5)
    for c, (name, cells) in enumerate(columns):
        x = GAP + c * (cell_w + 3 * GAP)
        draw.text((x, GAP // 2), name, fill=(0, 0, 0), font=title_font)
        for r, cell in enumerate(cells):
            sheet.paste(cell, (x, header + r * (cell_h + 2 * GAP)))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def sample_loader(
    records: Mapping[str, Mapping[str, Any]], get_sample: Callable[[str], Sample]
) -> LoadSample:
    """A ``load_sample_fn`` for :func:`render_contact_sheet` from a run's records and its samples.

    The image and ground truth (0 / 1 / 255) come from the :class:`Sample`; the prediction from the
    record's ``pred_rle`` (None when the run did not keep masks). The image of a sample the run
    recorded as failed (``error``: e.g. a truncated file) is drawn as a plain grey panel of its size
    when it still cannot be read, so the sheet shows the worst samples with the caption saying why;
    any other unreadable image raises.

    Args:
        records: the run's records by id (``load_results`` output).
        get_sample: ``id -> Sample``, e.g. ``samples_for(config, ids).__getitem__``
            (:func:`segzero.evaluation.benchmarks.samples_for` reloads a run's samples from its dataset,
            whatever its format).
    """

    def load_sample(sample_id: str) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
        sample = get_sample(sample_id)
        try:
            image = load_image(sample.image, name=f"image of {sample_id}")
        except InputError:
            if not records[sample_id].get("error"):
                raise
            h, w = sample.mask.shape if sample.mask is not None else (sample.height, sample.width)
            image = Image.new("RGB", (w, h), UNREADABLE_COLOR)
        gt = sample.mask if sample.mask is not None else np.zeros((image.height, image.width), dtype=np.uint8)
        rle = records[sample_id].get("pred_rle")
        return image, gt, decode_rle(rle) if rle else None

    return load_sample
