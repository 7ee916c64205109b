"""The Seg-Zero reference release's Hugging Face dataset format.

Columns:

- ``problem``: the request (``text`` is accepted too, as in the reference's evaluation sets);
- ``solution``: the ground-truth prompts, **already in the reasoner frame (``REASONER_FRAME``)**, in one of two forms,
  told apart by their first character:

  - single object, a tagged string: ``<box>(x1,y1),(x2,y2)</box><points>(x,y),(x,y)</points>``
    (a JSON object ``{"bbox": [...], "points_1": [...], "points_2": [...]}`` is read too);
  - multi object (VisionReasoner), a JSON list (or an actual list) of
    ``{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}``, one per object.

- ``image`` (PIL / ``datasets.Image``), ``img_height``, ``img_width`` (the size of the original photo;
  the stored image may already be resized, and the stored image is what the Samples describe);
- optional ``mask`` (the reference's evaluation sets), optional ``id`` / ``image_id`` / ``ann_id``.

Note: the reference's evaluation sets in this format turned ReasonSeg's ignore regions into foreground,
so their masks are only 0/1 and score differently from the original release (read ReasonSeg with
:mod:`segzero.data.reasonseg` for faithful numbers). A ``mask`` column is read as target = nonzero.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segzero.data.common import SkipLog, add_mask_prompts, check_options, open_image_bytes, resolve_report
from segzero.data.prepared import prompts_to_image_frame
from segzero.data.records import Sample
from segzero.defaults import REASONER_FRAME
from segzero.errors import DatasetError, InputError
from segzero.protocols import SEGZERO

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_PAIR = rf"\({_NUM},{_NUM}\)"
_BOX_RE = re.compile(rf"<box>\s*{_PAIR}\s*,\s*{_PAIR}\s*</box>")
_POINTS_RE = re.compile(r"<points>(.*?)</points>", re.DOTALL)
_PAIR_RE = re.compile(_PAIR)

Objects = tuple[str, list[list[int]], list[list[list[int]]]]


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{v!r} is not a coordinate")
    return int(math.floor(v + 0.5))


def _coords(value: Any, n: int, what: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{what} should have {n} numbers, got {value!r:.60}")
    return [_int(v) for v in value]


def parse_solution(solution: Any) -> Objects:
    """Read a reference ``solution`` into ``(form, boxes, points)`` in its own (reasoner) frame.

    Returns:
        ``form`` is ``"single"`` or ``"multi"``; ``boxes`` one ``[x1, y1, x2, y2]`` per object;
        ``points`` per object its list of ``[x, y]`` (two for single, one for multi).

    Raises:
        ValueError: with the reason, for anything else.
    """
    value = solution
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") or text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"the solution is not valid JSON ({exc})") from None
        else:
            box = _BOX_RE.search(text)
            pts = _POINTS_RE.search(text)
            if not box or not pts:
                raise ValueError("the solution has neither <box>...</box><points>...</points> nor JSON")
            points = [[_int(float(x)), _int(float(y))] for x, y in _PAIR_RE.findall(pts.group(1))]
            if not points:
                raise ValueError("the solution's <points> holds no (x,y) pair")
            return "single", [[_int(float(v)) for v in box.groups()]], [points]
    if isinstance(value, dict):
        points = [_coords(value[k], 2, k) for k in sorted(value) if k.startswith("points")]
        if "bbox" not in value or not points:
            raise ValueError("a JSON solution object needs 'bbox' and 'points_1'")
        return "single", [_coords(value["bbox"], 4, "bbox")], [points]
    if isinstance(value, list):
        boxes, points = [], []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or "bbox_2d" not in item or "point_2d" not in item:
                raise ValueError(f"object {i} of the solution lacks 'bbox_2d' or 'point_2d'")
            boxes.append(_coords(item["bbox_2d"], 4, "bbox_2d"))
            points.append([_coords(item["point_2d"], 2, "point_2d")])
        return "multi", boxes, points
    raise ValueError(f"the solution is a {type(solution).__name__}, not a string or a list")


def load_any_dataset(path: str | Path, split: str | None = None):
    """Open a local dataset as a ``datasets.Dataset``.

    Accepts a folder written by ``save_to_disk`` (a Dataset or a DatasetDict), a ``.parquet`` or
    ``.arrow`` file, or a folder ``datasets.load_dataset`` understands (e.g. a downloaded hub repo).

    Raises:
        DatasetError: the path is missing or unreadable, or ``split`` is missing or ambiguous.
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset path {path} does not exist; check the path.")
    try:
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            data = datasets.load_from_disk(str(path))
        elif path.suffix == ".parquet":
            data = datasets.Dataset.from_parquet(str(path))
        elif path.suffix == ".arrow":
            data = datasets.Dataset.from_file(str(path))
        else:
            data = datasets.load_dataset(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise DatasetError(f"{path} could not be opened as a dataset ({exc}).") from None
    if isinstance(data, (datasets.DatasetDict, dict)):
        names = list(data)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in names:
            raise DatasetError(f"{path} has splits {', '.join(names)}; choose one with --split.")
        data = data[split]
    return data


def _mask_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"the mask has shape {arr.shape}, not (height, width)")
    return (arr > 0).astype(np.uint8)


def _image(value: Any, name: str):
    from PIL import Image

    from segzero.images import load_image

    if isinstance(value, dict) and value.get("bytes"):
        return open_image_bytes(value["bytes"], name, value.get("path"))
    if isinstance(value, dict) and value.get("path"):
        return load_image(value["path"], name=name)
    if isinstance(value, Image.Image):
        return load_image(value, name=name)
    raise ValueError("the row has no image")


def _row_id(row: dict, index: int) -> str:
    if row.get("id") not in (None, ""):
        return str(row["id"])
    if row.get("image_id") not in (None, "") and row.get("ann_id") not in (None, ""):
        ann = row["ann_id"]
        ann = "-".join(map(str, ann)) if isinstance(ann, (list, tuple)) else ann
        return f"{row['image_id']}_{ann}"
    return str(index)


def read_reference_hf(
    path: str | Path,
    split: str | None = None,
    *,
    frame: int = REASONER_FRAME,
    source: str = "reference-hf",
    report: SkipLog | None = None,
    second_point: str = "inscribed",
    objects: str = "single",
    protocol: str = SEGZERO,
    keep_empty: bool = False,
) -> Iterator[Sample]:
    """Yield Samples from a dataset in the reference release's format.

    Args:
        path, split: see :func:`load_any_dataset`.
        frame: the frame the solutions are written in (``REASONER_FRAME`` in the reference).
        source: the ``source`` given to the Samples.
        report: receives rows skipped (no image, unreadable image, no request, unparsable solution,
            mask of the wrong size or empty, neither solution nor mask).
        second_point, objects, protocol: how prompts are drawn from the mask of a row that has no solution.
        keep_empty: yield a row whose mask has no target pixel instead of skipping it, as the reference's
            evaluation scores it (``segzero eval --protocol reference``).

    Yields:
        Samples describing the stored image (``width, height`` are its size). The ground truth given by
        the solution is kept exactly in ``extra["reasoner_boxes"]`` / ``extra["reasoner_points"]`` (frame
        ``extra["reasoner_frame"]``), which :func:`segzero.data.prepared.sample_to_row` writes back
        unchanged; ``boxes`` / ``points`` hold it mapped to image pixels. ``extra["answer_form"]`` is
        the solution's form, ``extra["original_size"]`` the ``[img_width, img_height]`` columns.
    """
    import datasets

    check_options(second_point, objects, protocol)
    report = resolve_report(report)
    data = load_any_dataset(path, split)
    if "image" in data.column_names and isinstance(data.features.get("image"), datasets.Image):
        data = data.cast_column("image", datasets.Image(decode=False))
    for index, row in enumerate(data):
        sample_id = _row_id(row, index)
        request = row.get("problem", row.get("text"))
        if isinstance(request, (list, tuple)):
            request = request[0] if request else None
        if not isinstance(request, str) or not request.strip():
            report.skip(sample_id, "the row has no request text ('problem' or 'text')", "no request")
            continue
        try:
            image = _image(row.get("image"), f"image of row {sample_id}")
        except (ValueError, InputError) as exc:
            report.skip(sample_id, str(exc), "bad image")
            continue
        width, height = image.size
        extra: dict[str, Any] = {"row": index}
        for key in ("image_id", "ann_id"):
            if row.get(key) is not None:
                extra[key] = row[key]
        if row.get("img_width") is not None and row.get("img_height") is not None:
            extra["original_size"] = [int(row["img_width"]), int(row["img_height"])]
        sample = Sample(
            id=sample_id,
            image=image,
            request=request.strip(),
            width=width,
            height=height,
            source=source,
            extra=extra,
        )
        if row.get("mask") is not None:
            try:
                sample.mask = _mask_array(row["mask"])
            except (ValueError, TypeError) as exc:
                report.skip(sample_id, str(exc), "bad mask")
                continue
            if sample.mask.shape != (height, width):
                report.skip(
                    sample_id,
                    f"the mask is {sample.mask.shape[1]}x{sample.mask.shape[0]}, the image {width}x{height}",
                    "bad mask",
                )
                continue
        if row.get("solution") not in (None, ""):
            try:
                form, boxes, points = parse_solution(row["solution"])
            except (ValueError, KeyError, TypeError) as exc:
                report.skip(sample_id, f"unreadable solution: {exc}", "bad solution")
                continue
            sample.boxes, sample.points = prompts_to_image_frame(boxes, points, (width, height), frame)
            extra.update(answer_form=form, reasoner_frame=frame, reasoner_boxes=boxes, reasoner_points=points)
        elif sample.mask is not None:
            if not add_mask_prompts(sample, second_point, objects, protocol) and not keep_empty:
                report.skip(sample_id, "the mask has no target pixel", "empty mask")
                continue
        else:
            report.skip(sample_id, "the row has neither a solution nor a mask", "no ground truth")
            continue
        yield sample
