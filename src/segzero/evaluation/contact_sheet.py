"""Contact sheet of a run: its k worst and k best samples by IoU, as in Figure 6 of the paper.

Each sample is a cell of three panels (image; ground truth; prediction with its boxes and
points) over a caption (IoU, request, start of the reasoning). Ignore pixels are hatched grey in
both overlays: they count neither for nor against the prediction. The panels are drawn by
:func:`segzero.drawing.draw_mask`, as every overlay is, and a legend heads the sheet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segzero.data.records import Sample
from segzero.defaults import IGNORE
from segzero.drawing import IGNORE_COLOUR, LegendEntry, draw_legend, draw_mask, font, shorten, wrap
from segzero.errors import DatasetError, InputError
from segzero.frames import Frame, ObjectPrompt
from segzero.images import load_image
from segzero.masks import decode_rle

#: ``load_sample(id) -> (RGB image, gt uint8 (H, W) 0/1/255, predicted bool (H, W) or None)``.
LoadSample = Callable[[str], tuple[Image.Image, np.ndarray, np.ndarray | None]]

PANEL = 240  # side of the square each panel is fitted into, in pixels
GAP = 8
CAPTION_LINES = 7
FONT_SIZE = 13
LINE_HEIGHT = 16
GT_COLOR = (40, 200, 80)
PRED_COLOR = (255, 64, 64)
UNREADABLE_COLOR = (170, 170, 170)  # stands for an image that cannot be decoded
LEGEND = (
    LegendEntry("mask", "ground truth", GT_COLOR),
    LegendEntry("mask", "prediction", PRED_COLOR),
    LegendEntry("box", "predicted box"),
    LegendEntry("point", "predicted points"),
    LegendEntry("ignore", "ignored (counts neither way)", IGNORE_COLOUR),
)


def select_worst_best(records: Iterable[Mapping[str, Any]], k: int) -> tuple[list[Mapping], list[Mapping]]:
    """The ``k`` lowest-IoU records (worst first) and, among the rest, the ``k`` highest (best first)."""
    ordered = sorted(records, key=lambda r: (r["iou"], r["id"]))
    worst = ordered[:k]
    best = ordered[len(worst) :][::-1][:k]
    return worst, best


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
    small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    ignore = gt == IGNORE
    empty = np.zeros(gt.shape, dtype=bool)
    gt_panel = draw_mask(image, gt == 1, size=size, colour=GT_COLOR, ignore=ignore)
    pred_panel = draw_mask(
        image, empty if pred is None else pred, _objects(record, (w, h)), size=size, colour=PRED_COLOR, ignore=ignore
    )
    return [small, gt_panel, pred_panel]


def _caption(record: Mapping[str, Any], title: str, fnt, width: int) -> list[str]:
    status = record.get("parse_status", "")
    head = f"{title}  IoU {record['iou']:.3f}  {record['id']}" + (f"  [{status}]" if status != "ok" else "")
    text = [f"Request: {record.get('request', '')}"]
    if record.get("error"):
        text.append(f"Error: {record['error']}")
    text.append(f"Thinking: {record.get('thinking') or '(none)'}")
    body = [line for para in text for line in wrap(" ".join(para.split()), fnt, width)]
    return shorten(wrap(head, fnt, width) + body, CAPTION_LINES, fnt, width)


def _cell(record: Mapping[str, Any], title: str, load_sample: LoadSample, fnt) -> Image.Image:
    image, gt, pred = load_sample(record["id"])
    panels = _panels(record, image, np.asarray(gt), None if pred is None else np.asarray(pred, dtype=bool))
    width = 3 * PANEL + 2 * GAP
    cell = Image.new("RGB", (width, PANEL + LINE_HEIGHT + CAPTION_LINES * LINE_HEIGHT + GAP), "white")
    draw = ImageDraw.Draw(cell)
    for i, (panel, label) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
        x = i * (PANEL + GAP)
        cell.paste(panel, (x + (PANEL - panel.width) // 2, LINE_HEIGHT + (PANEL - panel.height) // 2))
        draw.text((x, 0), label, fill=(90, 90, 90), font=fnt)
    y = LINE_HEIGHT + PANEL + GAP // 2
    for n, line in enumerate(_caption(record, title, fnt, width)):
        draw.text((0, y + n * LINE_HEIGHT), line, fill=(0, 0, 0) if n else (150, 0, 0), font=fnt)
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
    fnt = font(FONT_SIZE)
    columns = []
    for name, chosen in (("Worst", worst), ("Best", best)):
        if chosen:
            cells = [_cell(r, f"{name.lower()} #{i + 1}", load_sample_fn, fnt) for i, r in enumerate(chosen)]
            columns.append((f"{name} {len(chosen)} by IoU", cells))
    cell_w, cell_h = columns[0][1][0].size
    header = 3 * LINE_HEIGHT + GAP
    width = len(columns) * (cell_w + 3 * GAP) + GAP
    height = header + max(len(cells) for _, cells in columns) * (cell_h + 2 * GAP)
    sheet = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    title_font = font(FONT_SIZE + 5)
    draw_legend(draw, (GAP, GAP // 2), LEGEND, fnt)
    for c, (name, cells) in enumerate(columns):
        x = GAP + c * (cell_w + 3 * GAP)
        draw.text((x, GAP // 2 + LINE_HEIGHT + GAP), name, fill=(0, 0, 0), font=title_font)
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
