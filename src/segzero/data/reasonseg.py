"""ReasonSeg (LISA's release): a folder per split of ``NAME.jpg`` + ``NAME.json``.

Each JSON holds ``text`` (a list of requests), ``is_sentence`` (long query or not) and ``shapes``
(LabelMe polygons: ``{"label", "points": [[x, y], ...], "shape_type"}``).

The mask is built as LISA builds it, so that scores compare with published ones: shapes labelled
``flag`` are skipped; each remaining polygon is drawn alone to measure its area (pixels covered by
``cv2.polylines`` + ``cv2.fillPoly`` with coordinates truncated to int), then all are drawn again in
decreasing area order (a stable sort: equal areas keep file order) with value 255 for labels containing
"ignore" and 1 otherwise, so a smaller polygon drawn later wins where polygons overlap.

Requests: val and test use ``text[0]`` (the benchmark's protocol). Train yields one Sample per text by
default (ids ``NAME_k``), since every text describes the same mask and all are training signal;
``all_texts`` overrides either default.

Subsets: ``all``, ``short`` (``is_sentence`` false) and ``long`` (``is_sentence`` true).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segzero.data.common import (
    SkipLog,
    add_mask_prompts,
    check_options,
    find_image,
    image_header,
    oriented_size,
    resolve_report,
)
from segzero.data.records import Sample
from segzero.defaults import IGNORE
from segzero.errors import DatasetError
from segzero.protocols import SEGZERO

SUBSETS = ("all", "short", "long")


def _polygon(points: Any) -> np.ndarray | None:
    """Polygon as int32 ``(N, 2)`` (truncated, as LISA does), or None when it has < 3 finite points."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3 or not np.all(np.isfinite(arr)):
        return None
    return arr.astype(np.int32)


def _draw(mask: np.ndarray, poly: np.ndarray, value: int) -> None:
    cv2.polylines(mask, [poly], True, value, 1)
    cv2.fillPoly(mask, [poly], value)


def reasonseg_mask(shapes: list[dict], height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """Build the uint8 ``(height, width)`` mask (0 / 1 / 255) from LabelMe ``shapes``.

    Returns:
        ``(mask, problems)``: ``problems`` names each shape dropped for having fewer than 3 valid points.
    """
    drawn: list[tuple[int, np.ndarray, int]] = []
    problems: list[str] = []
    for i, shape in enumerate(shapes):
        label = str(shape.get("label", "")) if isinstance(shape, dict) else ""
        if label.lower() == "flag":
            continue
        poly = _polygon(shape.get("points") if isinstance(shape, dict) else None)
        if poly is None:
            problems.append(f"shape {i} ({label or 'no label'}) has fewer than 3 valid points")
            continue
        alone = np.zeros((height, width), dtype=np.uint8)
        _draw(alone, poly, 1)
        drawn.append((int(alone.sum()), poly, IGNORE if "ignore" in label.lower() else 1))
    mask = np.zeros((height, width), dtype=np.uint8)
    for _, poly, value in sorted(drawn, key=lambda item: -item[0]):
        _draw(mask, poly, value)
    return mask, problems


def _split_folder(root: Path, split: str) -> Path:
    for folder in (root / split, root):
        if folder.is_dir() and any(folder.glob("*.json")):
            return folder
    raise DatasetError(
        f"No ReasonSeg JSON files in {root / split} or {root}; point --root at the ReasonSeg folder."
    )


def read_reasonseg(
    root: str | Path,
    split: str = "val",
    *,
    subset: str = "all",
    all_texts: bool | None = None,
    report: SkipLog | None = None,
    second_point: str = "inscribed",
    objects: str = "single",
    protocol: str = SEGZERO,
    keep_empty: bool = False,
) -> Iterator[Sample]:
    """Yield ReasonSeg samples of one split, sorted by file name.

    Args:
        root: the ReasonSeg folder (holding ``train/``, ``val/``, ``test/``) or a split folder itself.
        split: ``train``, ``val`` or ``test``.
        subset: ``all``, ``short`` or ``long`` (by ``is_sentence``).
        all_texts: one Sample per text instead of ``text[0]`` only; default: True for train only.
        report: receives skipped records (unreadable JSON, image missing or unreadable, JSON missing,
            no text, no target pixel) and repairs (shapes with < 3 points dropped).
        second_point, objects, protocol: how ground-truth prompts are drawn from the mask.
        keep_empty: yield samples whose mask has no target pixel (with no boxes or points) instead of
            skipping them; the reference release's evaluation scores them (``segzero eval --protocol
            reference``).

    Yields:
        Samples with ``id = NAME`` (``NAME_k`` for the k-th text when all texts are used), ``image`` the
        file path, ``mask`` uint8 0/1/255 in the EXIF-oriented frame (the one LabelMe showed and
        :func:`segzero.images.load_image` returns), ``extra = {"split", "file_name", "text_index"}``.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    check_options(second_point, objects, protocol)
    report = resolve_report(report)
    folder = _split_folder(Path(root), split)
    use_all = (split == "train") if all_texts is None else all_texts

    stems = sorted(
        {p.stem for p in folder.glob("*.json")}
        | {p.stem for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    )
    for stem in stems:
        json_path = folder / f"{stem}.json"
        if not json_path.is_file():
            report.skip(stem, f"image {stem} has no annotation file {json_path.name}", "missing json")
            continue
        try:
            record = json.loads(json_path.read_text(encoding="utf-8"))
            texts = (
                [str(t) for t in record["text"]]
                if isinstance(record["text"], list)
                else [str(record["text"])]
            )
            shapes = list(record.get("shapes") or [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.skip(stem, f"{json_path.name} is not a readable ReasonSeg JSON ({exc})", "unreadable json")
            continue
        raw_flag = record.get("is_sentence")
        is_sentence = bool(raw_flag) if raw_flag is not None else None
        if (subset == "short" and is_sentence is not False) or (subset == "long" and is_sentence is not True):
            continue
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            report.skip(stem, f"{json_path.name} has no request text", "no text")
            continue
        image_path = find_image(folder, stem)
        if image_path is None:
            report.skip(stem, f"image file {stem}.jpg is missing", "missing image")
            continue
        try:
            width, height = oriented_size(*image_header(image_path))
        except OSError:
            report.skip(stem, f"image file {image_path.name} cannot be read", "unreadable image")
            continue
        mask, problems = reasonseg_mask(shapes, height, width)
        if not keep_empty and not (mask == 1).any():
            reason = "the mask has no target pixel" + (f" ({'; '.join(problems)})" if problems else "")
            report.skip(stem, reason, "empty mask")
            continue
        for problem in problems:
            report.warn(stem, f"{problem}; dropped")
        prompts = Sample(id=stem, image=image_path, request="", width=width, height=height, mask=mask)
        add_mask_prompts(prompts, second_point, objects, protocol)
        chosen = list(enumerate(texts)) if use_all else [(0, texts[0])]
        for k, text in chosen:
            yield Sample(
                id=f"{stem}_{k}" if use_all else stem,
                image=image_path,
                request=text,
                width=width,
                height=height,
                mask=mask.copy() if use_all else mask,
                boxes=list(prompts.boxes),
                points=list(prompts.points),
                source="reasonseg",
                is_sentence=is_sentence,
                extra={"split": split, "file_name": image_path.name, "text_index": k, **prompts.extra},
            )
