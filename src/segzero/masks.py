"""Mask encoding (COCO RLE) and drawing (overlay with box, points and caption)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segzero.frames import ObjectPrompt


def encode_rle(mask: np.ndarray) -> dict:
    """Bool ``(H, W)`` -> COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready).

    The one place segzero encodes masks: results, server responses and prepared datasets all use it.
    """
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE -> bool ``(H, W)``: compressed counts as str or bytes, or uncompressed counts as a list.

    The one place segzero decodes masks (its own RLEs and the datasets' uncompressed ones).
    """
    from pycocotools import mask as mask_utils

    h, w = (int(s) for s in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        encoded = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def save_mask_png(mask: np.ndarray, path) -> None:
    """Write a bool mask as an 8-bit PNG (0 / 255)."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def draw_overlay(
    image: Image.Image,
    mask: np.ndarray,
    objects: Sequence[ObjectPrompt] = (),
    caption: str | None = None,
    color: tuple[int, int, int] = (255, 64, 64),
) -> Image.Image:
    """The image with the mask tinted, boxes outlined, points marked, and an optional caption below.

    Args:
        image: RGB image of size ``(W, H)``.
        mask: bool ``(H, W)``.
        objects: boxes and points in the image's pixel frame.
        caption: text drawn under the image (request and reasoning), wrapped to the width.
    """
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    tint = np.array(color, dtype=np.float32)
    base[mask] = 0.5 * base[mask] + 0.5 * tint
    out = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(out.size) / 200))
    radius = max(2, round(min(out.size) / 80))
    for obj in objects:
        if obj.box is not None:  # corners in any order (the reference protocol keeps the answer's order)
            x1, y1, x2, y2 = obj.box
            draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=(0, 255, 0), width=line)
        for x, y in obj.points:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 0), outline=(0, 0, 0))
    if not caption:
        return out
    font = ImageFont.load_default()
    chars = max(20, out.width // 7)
    lines = [wrapped for para in caption.splitlines() for wrapped in (textwrap.wrap(para, chars) or [""])]
    lines = lines[:40]
    height = 14 * len(lines) + 8
    canvas = Image.new("RGB", (out.width, out.height + height), (255, 255, 255))
    canvas.paste(out, (0, 0))
    text = ImageDraw.Draw(canvas)
    for i, text_line in enumerate(lines):
        text.text((4, out.height + 4 + 14 * i), text_line, fill=(0, 0, 0), font=font)
    return canvas
