"""The reference's training-data filter: keep a sample only if the segmenter agrees with its ground truth.

Each object is given to the segmenter as its box plus its first point (image frame); the sample is kept
when the union of the predicted masks reaches IoU >= ``threshold`` (0.6 in the reference) with the
target pixels. Ignore pixels (255) count neither as intersection nor as union. A sample that matches
nothing (``extra["no_target"]``) has nothing to reproduce and is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Protocol

import numpy as np

from segzero.data.common import SkipLog, resolve_report
from segzero.data.records import NO_TARGET_KEY, Sample
from segzero.defaults import SEGMENTER_AGREEMENT_IOU
from segzero.frames import Frame, ObjectPrompt
from segzero.geometry import ground_truth_planes, mask_iou


#: Agreement key of a sample that matches nothing: kept without asking the segmenter.
_NO_TARGET: Any = object()


class SegmentsMany(Protocol):
    """What the filter needs of a segmenter (:class:`segzero.segmenter.Segmenter` has it)."""

    def segment_many(
        self, images: list[Any], prompts: list[list[ObjectPrompt]], mode: str = "both"
    ) -> list[Any]:
        """One output per image, whose ``.mask`` is a boolean ``(H, W)`` array in that image's pixels."""
        ...


def filter_by_segmenter(
    samples: Iterable[Sample],
    segmenter: SegmentsMany,
    *,
    threshold: float = SEGMENTER_AGREEMENT_IOU,
    batch_size: int = 8,
    report: SkipLog | None = None,
) -> Iterator[Sample]:
    """Yield the samples the segmenter reproduces; report the others with their IoU.

    Samples need a ``mask`` and ``boxes`` / ``points`` in image pixels (every reader fills them).
    The IoU is stored in ``extra["segmenter_iou"]`` of the kept samples.
    """
    report = resolve_report(report)
    it = iter(samples)
    # Consecutive samples often share an image and an object (RefCOCO: several sentences per object);
    # those are segmented once. Keys cover the image, the prompts and the mask.
    recent: dict[tuple, float] = {}
    while batch := list(islice(it, batch_size)):
        todo: dict[tuple, Sample] = {}
        keys = []
        for sample in batch:
            if sample.extra.get(NO_TARGET_KEY):
                keys.append(_NO_TARGET)  # nothing to segment, nothing to disagree with: kept
                continue
            if sample.mask is None or not sample.boxes:
                keys.append(None)
                continue
            key = _agreement_key(sample)
            keys.append(key)
            if key not in recent:
                todo.setdefault(key, sample)
        recent = {k: v for k, v in recent.items() if k in keys} | _agreement(list(todo.items()), segmenter)
        for sample, key in zip(batch, keys):
            if key is _NO_TARGET:
                yield sample
                continue
            if key is None:
                report.skip(
                    sample.id,
                    "the sample has no mask or no box to check with the segmenter",
                    "no ground truth",
                )
                continue
            iou = recent[key]
            if iou < 0:
                report.skip(
                    sample.id,
                    "the segmenter returned a mask of another size than the image's",
                    "segmenter error",
                )
            elif iou >= threshold:
                sample.extra["segmenter_iou"] = round(iou, 4)
                yield sample
            else:
                report.skip(
                    sample.id, f"segmenter agreement IoU {iou:.3f} < {threshold}", "segmenter disagrees"
                )


def _agreement_key(sample: Sample) -> tuple:
    import hashlib

    image = str(sample.image) if not hasattr(sample.image, "size") else f"pil:{id(sample.image)}"
    digest = hashlib.blake2b(np.ascontiguousarray(sample.mask).tobytes(), digest_size=12).hexdigest()
    return image, tuple(map(tuple, sample.boxes)), tuple(p[:1] for p in sample.points), digest


def _agreement(items: list[tuple[tuple, Sample]], segmenter: SegmentsMany) -> dict[tuple, float]:
    """IoU per key (-1 when the predicted mask has the wrong shape); each distinct image is loaded once."""
    from segzero.images import load_image

    if not items:
        return {}
    loaded: dict[str, Any] = {}
    images = []
    for key, sample in items:
        if key[0] not in loaded:
            loaded[key[0]] = load_image(sample.image, name=f"image of {sample.id}")
        images.append(loaded[key[0]])
    prompts = [
        [
            ObjectPrompt.from_lists(box, pts[:1], Frame.image((s.width, s.height)))
            for box, pts in zip(s.boxes, s.points)
        ]
        for _, s in items
    ]
    outputs = segmenter.segment_many(images, prompts, mode="both")
    result = {}
    for (key, sample), out in zip(items, outputs):
        pred = np.asarray(out.mask, dtype=bool)
        ok = pred.shape == sample.mask.shape
        result[key] = mask_iou(pred, *ground_truth_planes(sample.mask)) if ok else -1.0
    return result
