"""Mask encoding (COCO RLE) and mask PNGs; drawing masks on images is :mod:`segzero.drawing`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image


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
