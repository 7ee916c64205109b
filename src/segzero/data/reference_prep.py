"""Training samples stored as the reference release stored them (``segzero prepare --protocol reference``).

The reference's ``prepare_dataset/gen_training_dataset.py`` reads each image with ``cv2.imread`` (then BGR
to RGB), resizes it to 840x840 with ``cv2.INTER_AREA`` and stores those pixels; the prompts, drawn on the
original image, are scaled with ``int(v * (840 / size) + 0.5)``. That rounds the factor ``840 / size`` to
a float before multiplying, so a coordinate whose exact image is a half pixel can land one lower than
with :func:`segzero.frames.scale` (``int(v * 840 / size + 0.5)``): 295 of the 8.4 million (v, size) pairs
with size up to 4096, e.g. 47 of 752 columns gives 52, not 53. That rounding is the reference rule of the
one mapping between frames, :func:`segzero.frames.map_object` with ``rounding="reference"``.

The prompts of the sample (points by :func:`segzero.geometry.reference_points`, filtered by SAM2) are
found before, on the original image; this module only changes the frame the sample is stored in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segzero.data.common import SkipLog, resolve_report
from segzero.data.records import Sample
from segzero.defaults import REASONER_FRAME
from segzero.errors import DatasetError, InputError
from segzero.frames import Frame, ObjectPrompt, map_object


def _rgb_pixels(sample: Sample) -> np.ndarray:
    """The sample's image as uint8 RGB ``(H, W, 3)``: a file through ``cv2.imread`` as the reference reads it."""
    import cv2

    if isinstance(sample.image, (str, Path)):
        bgr = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"Sample {sample.id}: OpenCV cannot read the image {sample.image}.")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        from segzero.images import load_image

        try:
            rgb = np.asarray(load_image(sample.image, name=f"image of {sample.id}"))
        except InputError as exc:
            raise DatasetError(f"Sample {sample.id}: {exc}") from None
    if rgb.shape[:2] != (sample.height, sample.width):
        raise DatasetError(
            f"Sample {sample.id}: the image is {rgb.shape[1]}x{rgb.shape[0]}, "
            f"the sample says {sample.width}x{sample.height}."
        )
    return rgb


def reference_training_sample(sample: Sample, side: int = REASONER_FRAME) -> Sample:
    """``sample`` stored in the reasoner frame: image resized to ``side x side`` (cv2 ``INTER_AREA``), prompts
    mapped with the reference's rounding (:func:`segzero.frames.map_object`), mask resized with nearest
    neighbour.

    The reference stores no mask; this one keeps the row usable by the ``mask_iou`` reward. ``extra``
    gains ``original_width`` / ``original_height`` (the reference's ``img_width`` / ``img_height``), the
    exact ``reasoner_boxes`` / ``reasoner_points`` and ``protocol: "reference"``.

    Raises:
        DatasetError: the image cannot be read, or its size is not the sample's.
    """
    import cv2
    from PIL import Image

    resized = cv2.resize(_rgb_pixels(sample), (side, side), interpolation=cv2.INTER_AREA)
    w, h = sample.width, sample.height
    image, reasoner = Frame.image((w, h)), Frame.reasoner(side)

    def mapped(box: Any, pts: Any) -> ObjectPrompt:
        return map_object(ObjectPrompt.from_lists(box, pts, image), reasoner, rounding="reference")

    boxes = [list(mapped(box, ()).box) for box in sample.boxes]
    points = [[list(p) for p in mapped(None, pts).points] for pts in sample.points]
    mask = None
    if sample.mask is not None:
        mask = cv2.resize(sample.mask, (side, side), interpolation=cv2.INTER_NEAREST)
    extra = {
        **sample.extra,
        "original_width": w,
        "original_height": h,
        "protocol": "reference",
        "reasoner_frame": side,
        "reasoner_boxes": boxes,
        "reasoner_points": points,
    }
    return dataclasses.replace(
        sample,
        image=Image.fromarray(resized),
        width=side,
        height=side,
        mask=mask,
        boxes=[tuple(b) for b in boxes],
        points=[tuple(tuple(p) for p in pts) for pts in points],
        extra=extra,
    )


def reference_training_samples(
    samples: Iterable[Sample], side: int = REASONER_FRAME, *, report: SkipLog | None = None
) -> Iterator[Sample]:
    """:func:`reference_training_sample` over ``samples``; one that fails is skipped and reported."""
    report = resolve_report(report)
    for sample in samples:
        try:
            yield reference_training_sample(sample, side)
        except DatasetError as exc:
            report.kept -= 1  # counted as kept by iter_samples, which handed it on
            report.skip(sample.id, str(exc), "unreadable image")
