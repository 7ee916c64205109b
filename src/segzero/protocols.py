"""Protocols: named sets of choices for the steps where segzero and the reference release differ.

* ``segzero`` (the default everywhere): this project's choices.
* ``reference``: what the reference release (dvlab-research/Seg-Zero) does, fact by fact (SPEC section 9),
  for reproducing its published numbers. ``docs/reproducing.md`` lists each difference and its effect.

A command takes ``--protocol NAME``; :func:`check_protocol` turns a bad name into one sentence, and a
command's resolver (e.g. :func:`prepare_settings`) turns an option that contradicts the protocol into one
sentence, both before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from segzero.defaults import DEFAULT_SEGMENTER, REASONER_FRAME, SEGMENTER_AGREEMENT_IOU
from segzero.errors import InputError

SEGZERO = "segzero"
REFERENCE = "reference"
#: Every protocol name, the default first.
PROTOCOLS = (SEGZERO, REFERENCE)

#: Dataset sources that already carry their prompts, so a preparation protocol cannot apply to them.
_PREPARED_SOURCES = {
    "prepared": "a prepared dataset keeps the prompts it was written with",
    "reference-hf": "the reference's own dataset already is its preparation",
}


def check_protocol(name: str) -> str:
    """``name`` if it is a protocol.

    Raises:
        InputError: for any other name.
    """
    if name not in PROTOCOLS:
        raise InputError(f"Unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}.")
    return name


@dataclass(frozen=True)
class PrepareSettings:
    """How ``segzero prepare`` draws, filters and stores training samples under a protocol.

    Attributes:
        protocol: the protocol these settings follow.
        second_point: point 2's rule (:data:`segzero.geometry.SECOND_POINT_METHODS`).
        objects: ``"single"`` (the mask is one object) or ``"components"``.
        frame: side of the reasoner frame the prompts are written in.
        segmenter: SAM2 id or folder of the agreement filter, or None for no filter.
        filter_iou: IoU the segmenter must reach to keep a sample.
        multimask: whether the filter's segmenter picks among its candidate masks (segzero) or
            returns its single-mask output (the reference: ``multimask_output=False``).
        reference_images: store 840x840 images resized with cv2 ``INTER_AREA`` and prompts scaled with
            the reference's rounding (:mod:`segzero.data.reference_prep`) instead of the original images.
    """

    protocol: str
    second_point: str
    objects: str
    frame: int
    segmenter: str | None
    filter_iou: float
    multimask: bool
    reference_images: bool


def prepare_settings(
    protocol: str,
    *,
    source: str,
    second_point: str | None = None,
    objects: str | None = None,
    frame: int | None = None,
    segmenter: str | None = None,
    filter_iou: float | None = None,
) -> PrepareSettings:
    """The settings of ``segzero prepare`` under ``protocol``; None means "not given, use the protocol's".

    Under ``segzero`` every option is free (defaults: inscribed point 2, single object, frame 840, no
    filter, IoU 0.6). Under ``reference`` the options are fixed to the reference's values (point 2 by
    its heuristic on the unpadded distance transform, one object, frame 840, SAM2.1 box + point 1 with
    one output mask, IoU >= 0.6, 840x840 ``INTER_AREA`` images); giving one of them another value, or a
    source that already carries its prompts, contradicts it. ``segmenter`` may still name a local copy.

    Raises:
        InputError: an unknown protocol, or an option that contradicts it (one sentence each).
    """
    check_protocol(protocol)
    if protocol == SEGZERO:
        return PrepareSettings(
            protocol=protocol,
            second_point=second_point or "inscribed",
            objects=objects or "single",
            frame=REASONER_FRAME if frame is None else frame,
            segmenter=segmenter,
            filter_iou=SEGMENTER_AGREEMENT_IOU if filter_iou is None else filter_iou,
            multimask=True,
            reference_images=False,
        )
    if source in _PREPARED_SOURCES:
        raise InputError(
            f"--protocol reference prepares samples from their masks, but {_PREPARED_SOURCES[source]}; "
            "run it on the original dataset (refcocog, reasonseg, ...) or drop --protocol."
        )
    fixed = {
        "--second-point": (second_point, "reference", "point 2 comes from the reference's heuristic"),
        "--objects": (objects, "single", "each mask is one object"),
        "--frame": (frame, REASONER_FRAME, f"prompts are written in the {REASONER_FRAME} frame"),
        "--filter-iou": (
            filter_iou,
            SEGMENTER_AGREEMENT_IOU,
            f"samples need IoU >= {SEGMENTER_AGREEMENT_IOU}",
        ),
    }
    for option, (given, value, why) in fixed.items():
        if given is not None and given != value:
            raise InputError(
                f"{option} {given} contradicts --protocol reference, where {why}; drop {option}."
            )
    return PrepareSettings(
        protocol=protocol,
        second_point="reference",
        objects="single",
        frame=REASONER_FRAME,
        segmenter=segmenter or DEFAULT_SEGMENTER,
        filter_iou=SEGMENTER_AGREEMENT_IOU,
        multimask=False,
        reference_images=True,
    )
