"""The prepared dataset: the one on-disk format training, evaluation and the toy generator share.

A Hugging Face ``datasets.Dataset`` written with ``save_to_disk``, one row per sample:

====================  ==========================================================================
column                content
====================  ==========================================================================
``id``                unique within the dataset
``image``             ``datasets.Image``: the image bytes, in the frame of the masks and boxes
``request``           the referring expression or question
``width, height``     image size in pixels
``reasoner_frame``    side of the reasoner's square frame the prompts below are in
``reasoner_boxes``    per object ``[x1, y1, x2, y2]`` (ints, inclusive, reasoner frame); ``[]`` when
                      the request matches nothing (``extra["no_target"]``, an all-zero mask)
``reasoner_points``   per object its list of ``[x, y]`` (2 for single-object answers, 1 for multi)
``mask_rle``          target pixels as COCO RLE ``{"size": [h, w], "counts": str}``, or None
``ignore_rle``        ignore pixels (255) as COCO RLE, or None when there are none
``source``            dataset name (``refcocog``, ``reasonseg``, ``shapeworld``, ...)
``is_sentence``       ReasonSeg's long-query flag, or None
``solution``          the answer the model is trained toward (see :func:`build_solution`)
``extra``             JSON object with whatever else the reader kept (split, COCO ids, ...)
====================  ==========================================================================

A sample where nothing matches the request (``extra["no_target"]`` true) has empty ``reasoner_boxes``
and ``reasoner_points``, an all-zero mask, and ``solution`` ``"[]"`` (the ``generalized`` answer form).

Prompts go from image pixels to the reasoner frame only through :func:`segzero.frames.to_reasoner_frame`
(``int(v * frame / size + 0.5)``). A Sample that carries its prompts already in the reasoner frame
(``extra["reasoner_boxes"]``, ``extra["reasoner_points"]``, ``extra["reasoner_frame"]``, as
:func:`row_to_sample` and the reference-format reader leave them) is written with those exact values
as long as they still map to its ``boxes`` / ``points`` (so edited prompts are never overridden by stale
ones), so Sample -> row -> Sample -> row changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segzero.data.common import SkipLog, add_mask_prompts, encode_image, open_image_bytes, resolve_report
from segzero.data.records import NO_TARGET_KEY, Sample
from segzero.defaults import IGNORE, REASONER_FRAME
from segzero.errors import DatasetError, InputError, SegZeroError
from segzero.frames import Frame, ObjectPrompt, to_image_frame, to_reasoner_frame
from segzero.masks import decode_rle, encode_rle

#: Keys of ``Sample.extra`` that are row columns (see :func:`row_to_sample`), not part of the ``extra`` JSON.
_ROW_KEYS = ("reasoner_frame", "reasoner_boxes", "reasoner_points", "solution")

ANSWER_FORMS = ("single", "multi", "generalized")


def features():
    """The ``datasets.Features`` of a prepared dataset."""
    import datasets

    rle = {"size": datasets.List(datasets.Value("int32")), "counts": datasets.Value("string")}
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "request": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "reasoner_frame": datasets.Value("int32"),
            "reasoner_boxes": datasets.List(datasets.List(datasets.Value("int32"))),
            "reasoner_points": datasets.List(datasets.List(datasets.List(datasets.Value("int32")))),
            "mask_rle": rle,
            "ignore_rle": dict(rle),
            "source": datasets.Value("string"),
            "is_sentence": datasets.Value("bool"),
            "solution": datasets.Value("string"),
            "extra": datasets.Value("string"),
        }
    )


def build_solution(boxes: list[list[int]], points: list[list[list[int]]], form: str) -> str:
    """The answer text the reasoner is trained toward, in the reasoner frame.

    ``"single"``: ``{"bbox": [x1,y1,x2,y2], "points_1": [x,y], "points_2": [x,y]}`` (Seg-Zero; one
    object, two points; a one-point object repeats its point). ``"multi"``: ``[{"bbox_2d": [...],
    "point_2d": [x,y]}, ...]`` (VisionReasoner; first point of each object). ``"generalized"``: the same
    list for zero, one or many objects (the ``generalized`` prompt), ``[]`` for a sample where nothing
    matches (no boxes, no points, an all-zero mask, ``extra["no_target"]`` true).

    Raises:
        ValueError: a single-object answer asked for something other than exactly one object.
    """
    if form == "single":
        if len(boxes) != 1 or len(points) != 1 or not points[0]:
            raise ValueError(f"a single-object answer needs one object with points, got {len(boxes)} objects")
        pts = points[0]
        second = pts[1] if len(pts) > 1 else pts[0]
        return json.dumps({"bbox": list(boxes[0]), "points_1": list(pts[0]), "points_2": list(second)})
    if form in ("multi", "generalized"):
        return json.dumps([{"bbox_2d": list(b), "point_2d": list(p[0])} for b, p in zip(boxes, points)])
    raise ValueError(f"answer form must be one of {ANSWER_FORMS}, got {form!r}")


def prompts_to_image_frame(
    reasoner_boxes: list[list[int]], reasoner_points: list[list[list[int]]], size: tuple[int, int], frame: int
) -> tuple[list, list]:
    """Prompts of the ``frame`` reasoner frame mapped to image pixels (``size`` = (w, h)) as Sample
    ``boxes`` / ``points``."""
    boxes, points = [], []
    for box, pts in zip(reasoner_boxes, reasoner_points):
        mapped = to_image_frame(ObjectPrompt.from_lists(box, pts, Frame.reasoner(frame)), size)
        boxes.append(tuple(int(v) for v in mapped.box))
        points.append(tuple((int(x), int(y)) for x, y in mapped.points))
    return boxes, points


def _reasoner_prompts(
    sample: Sample, frame: int, second_point: str
) -> tuple[list[list[int]], list[list[list[int]]]]:
    if sample.extra.get(NO_TARGET_KEY):
        # Nothing matches the request: no prompts, and no target pixel to draw them from.
        target = 0 if sample.mask is None else int((sample.mask == 1).sum())
        if sample.boxes or sample.points or target:
            raise DatasetError(
                f"Sample {sample.id} is marked no_target but has {len(sample.boxes)} boxes and "
                f"{target} target pixels."
            )
        return [], []
    if not sample.points and sample.mask is not None and sample.extra.get("reasoner_boxes") is None:
        # A Sample with a mask but no points (e.g. ShapeWorld's): its prompts come from the mask.
        sample = dataclasses.replace(sample, extra=dict(sample.extra))
        if not add_mask_prompts(sample, second_point):
            raise DatasetError(f"Sample {sample.id} has no target pixel to draw prompts from.")
    if len(sample.points) != len(sample.boxes):
        raise DatasetError(
            f"Sample {sample.id} has {len(sample.boxes)} boxes but {len(sample.points)} point lists."
        )
    size = (sample.width, sample.height)
    extra = sample.extra
    if extra.get("reasoner_frame") == frame and extra.get("reasoner_boxes") is not None:
        boxes = [[int(v) for v in b] for b in extra["reasoner_boxes"]]
        points = [[[int(x), int(y)] for x, y in pts] for pts in extra.get("reasoner_points") or []]
        # Exact values only while they still describe this sample's boxes and points (not edited since).
        image_boxes, image_points = prompts_to_image_frame(boxes, points, size, frame)
        if (
            len(points) == len(boxes)
            and image_boxes == [tuple(b) for b in sample.boxes]
            and image_points == [tuple(map(tuple, p)) for p in sample.points]
        ):
            return boxes, points
    boxes, points = [], []
    for box, pts in zip(sample.boxes, sample.points):
        mapped = to_reasoner_frame(ObjectPrompt.from_lists(box, pts, Frame.image(size)), frame)
        boxes.append([int(v) for v in mapped.box])
        points.append([[int(x), int(y)] for x, y in mapped.points])
    return boxes, points


def sample_to_row(
    sample: Sample,
    frame: int = REASONER_FRAME,
    *,
    answer_form: str | None = None,
    second_point: str = "inscribed",
) -> dict[str, Any]:
    """Turn a Sample (image frame) into a prepared-dataset row (prompts in the ``frame`` reasoner frame).

    Args:
        sample: with ``boxes`` / ``points`` in image pixels (or exact reasoner-frame prompts in ``extra``,
            see the module docstring) and an optional uint8 0/1/255 ``mask`` of shape ``(height, width)``.
        frame: side of the reasoner's square frame.
        answer_form: ``"single"``, ``"multi"`` or ``"generalized"`` for ``solution``; default
            ``extra["answer_form"]`` if set, else generalized for a sample marked ``extra["no_target"]``,
            single for one object and multi otherwise.
        second_point: for a sample with a mask but no points, how point 2 is drawn from the mask
            (:func:`segzero.geometry.second_inscribed_point`); its box and points then come from the mask.

    Raises:
        DatasetError: the mask does not match the size, the boxes and points do not pair up, a single
            answer was asked for a sample without exactly one object, a sample marked ``no_target`` has
            boxes or target pixels, or the image cannot be read.
    """
    if sample.width < 1 or sample.height < 1:
        raise DatasetError(
            f"Sample {sample.id} has size {sample.width}x{sample.height}; both must be positive."
        )
    boxes, points = _reasoner_prompts(sample, frame, second_point)
    default = "generalized" if sample.extra.get("no_target") else "single" if len(boxes) == 1 else "multi"
    form = answer_form or sample.extra.get("answer_form") or default
    try:
        solution = build_solution(boxes, points, form)
    except ValueError as exc:
        raise DatasetError(f"Sample {sample.id}: {exc}.") from None
    mask_rle = ignore_rle = None
    if sample.mask is not None:
        if sample.mask.shape != (sample.height, sample.width):
            raise DatasetError(
                f"Sample {sample.id} has a {sample.mask.shape} mask "
                f"for a {sample.width}x{sample.height} image."
            )
        mask_rle = encode_rle(sample.mask == 1)
        if (sample.mask == IGNORE).any():
            ignore_rle = encode_rle(sample.mask == IGNORE)
    try:
        image = encode_image(sample.image)
    except (InputError, OSError) as exc:
        raise DatasetError(f"Sample {sample.id}: {exc}") from None
    extra = {k: v for k, v in sample.extra.items() if k not in _ROW_KEYS}
    extra["answer_form"] = form
    return {
        "id": str(sample.id),
        "image": image,
        "request": sample.request,
        "width": int(sample.width),
        "height": int(sample.height),
        "reasoner_frame": int(frame),
        "reasoner_boxes": boxes,
        "reasoner_points": points,
        "mask_rle": mask_rle,
        "ignore_rle": ignore_rle,
        "source": sample.source,
        "is_sentence": sample.is_sentence,
        "solution": solution,
        "extra": json.dumps(extra, default=_json_default),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def row_to_sample(row: dict[str, Any]) -> Sample:
    """Turn a prepared-dataset row back into a Sample.

    ``image`` becomes an RGB PIL image (EXIF orientation applied); ``mask`` uint8 0/1/255 from the RLEs
    (None when ``mask_rle`` is None); ``boxes`` / ``points`` are the reasoner-frame prompts mapped to
    image pixels with :func:`segzero.frames.to_image_frame`, and the exact reasoner-frame values stay in
    ``extra`` (``reasoner_frame``, ``reasoner_boxes``, ``reasoner_points``) along with the ``extra``
    column and ``solution``.

    Raises:
        DatasetError: the row's image cannot be decoded or its masks do not match its size.
    """
    from PIL import Image

    from segzero.images import load_image

    sample_id = str(row["id"])
    width, height, frame = int(row["width"]), int(row["height"]), int(row["reasoner_frame"])
    raw = row["image"]
    try:
        if isinstance(raw, dict) and raw.get("bytes"):
            image = open_image_bytes(raw["bytes"], f"image of {sample_id}", raw.get("path"))
        elif isinstance(raw, dict) and raw.get("path"):
            image = load_image(raw["path"], name=f"image of {sample_id}")
        elif isinstance(raw, Image.Image):
            image = load_image(raw, name=f"image of {sample_id}")
        else:
            raise InputError(f"the row has no image ({type(raw).__name__})")
    except InputError as exc:
        raise DatasetError(f"Prepared row {sample_id}: {exc}") from None

    mask = None
    if row.get("mask_rle"):
        mask = decode_rle(row["mask_rle"]).astype(np.uint8)
        if row.get("ignore_rle"):
            mask[decode_rle(row["ignore_rle"])] = IGNORE
        if mask.shape != (height, width):
            raise DatasetError(
                f"Prepared row {sample_id} has a {mask.shape} mask for a {width}x{height} image."
            )

    reasoner_boxes = [[int(v) for v in b] for b in row["reasoner_boxes"]]
    reasoner_points = [[[int(x), int(y)] for x, y in pts] for pts in row["reasoner_points"]]
    boxes, points = prompts_to_image_frame(reasoner_boxes, reasoner_points, (width, height), frame)

    extra = json.loads(row.get("extra") or "{}")
    extra.update(
        reasoner_frame=frame, reasoner_boxes=reasoner_boxes, reasoner_points=reasoner_points,
        solution=row["solution"],
    )
    return Sample(
        id=sample_id,
        image=image,
        request=row["request"],
        width=width,
        height=height,
        mask=mask,
        boxes=boxes,
        points=points,
        source=row.get("source") or "",
        is_sentence=row.get("is_sentence"),
        extra=extra,
    )


def save_prepared(
    samples: Iterable[Sample],
    path: str | Path,
    *,
    frame: int = REASONER_FRAME,
    answer_form: str | None = None,
    second_point: str = "inscribed",
    report: SkipLog | None = None,
) -> int:
    """Write samples as a prepared dataset with ``save_to_disk``; returns the number of rows written.

    ``answer_form`` and ``second_point`` are passed to :func:`sample_to_row`; a sample that cannot be
    converted is skipped and given to ``report``.
    Rows stream through a temporary Arrow cache next to ``path``, so memory stays flat. ``path`` must
    not hold a dataset already (remove it first).
    """
    import datasets

    report = resolve_report(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counter = {"rows": 0}

    def rows() -> Iterator[dict[str, Any]]:
        for sample in samples:
            try:
                row = sample_to_row(sample, frame, answer_form=answer_form, second_point=second_point)
            except DatasetError as exc:
                report.skip(sample.id, str(exc), "not convertible")
                continue
            counter["rows"] += 1
            yield row

    cache = Path(tempfile.mkdtemp(prefix=".segzero-prepare-", dir=path.parent))
    try:
        first = next(iter_rows := rows(), None)
        if first is None:
            data = datasets.Dataset.from_dict({k: [] for k in features()}, features=features())
        else:

            def generate() -> Iterator[dict[str, Any]]:
                yield first
                yield from iter_rows

            try:
                data = datasets.Dataset.from_generator(
                    generate,
                    features=features(),
                    cache_dir=str(cache),
                    fingerprint=f"segzero-prepare-{cache.name}",
                )
            except datasets.exceptions.DatasetGenerationError as exc:
                # A reader's error for people (e.g. DatasetError) arrives wrapped; hand it on as it was.
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, SegZeroError):
                    raise cause from None
                raise
        # One shard even when empty: datasets cannot load back a save with zero shards.
        data.save_to_disk(str(path), num_shards=1 if data.num_rows == 0 else None)
        del data
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return counter["rows"]


def load_prepared(path: str | Path, split: str | None = None):
    """Open a prepared dataset as a ``datasets.Dataset`` (images decode to PIL on access).

    Raises:
        DatasetError: the path is not a dataset, or lacks prepared-dataset columns.
    """
    import datasets

    path = Path(path)
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DatasetError(
            f"{path} is not a prepared dataset ({exc}); write one with `segzero prepare`."
        ) from None
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in names:
            raise DatasetError(f"{path} has splits {', '.join(names)}; choose one.")
        data = data[split]
    missing = [
        c
        for c in ("id", "image", "request", "reasoner_boxes", "reasoner_points", "solution")
        if c not in data.column_names
    ]
    if missing:
        raise DatasetError(
            f"{path} lacks the prepared-dataset columns {', '.join(missing)}; "
            "write it with `segzero prepare`."
        )
    return data


def read_prepared(
    path: str | Path, split: str | None = None, *, report: SkipLog | None = None
) -> Iterator[Sample]:
    """Yield the Samples of a prepared dataset; rows that cannot be decoded are skipped and reported."""
    import datasets

    report = resolve_report(report)
    data = load_prepared(path, split).cast_column("image", datasets.Image(decode=False))
    for row in data:
        try:
            yield row_to_sample(row)
        except DatasetError as exc:
            report.skip(str(row.get("id")), str(exc), "bad row")
