"""Protocols: named sets of choices for the steps where segzero and the reference release differ.

* ``segzero`` (the default everywhere): this project's choices.
* ``reference``: what the reference release (dvlab-research/Seg-Zero) does, fact by fact (SPEC section 9),
  for reproducing its published numbers. ``docs/reproducing.md`` lists each difference and its effect.

A command takes ``--protocol NAME``; :func:`check_protocol` turns a bad name into one sentence, and a
command's resolver turns an option that contradicts the protocol into one sentence, both before any model
loads: :func:`prepare_settings` for ``segzero prepare``, :func:`check_pipeline` for the pipeline's settings
(``segzero segment|batch|eval|serve``, :meth:`segzero.config.PipelineConfig.resolved`).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from segzero.defaults import (
    DEFAULT_PROMPT,
    DEFAULT_SEGMENTER,
    MAX_NEW_TOKENS,
    REASONER_FRAME,
    REFERENCE_SEGMENTER,
    SEGMENTER_AGREEMENT_IOU,
)
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


def default_segmenter(protocol: str) -> str:
    """The segmenter a pipeline uses under ``protocol`` when none is named: SAM 2.1 for ``segzero``, SAM 2.0
    (``facebook/sam2-hiera-large``, what the reference evaluated with) for ``reference``."""
    return REFERENCE_SEGMENTER if check_protocol(protocol) == REFERENCE else DEFAULT_SEGMENTER


def check_pipeline(config: Any, recorded: Mapping[str, Any] | None = None) -> None:
    """Refuse pipeline settings that contradict their protocol, in one sentence, before any model loads.

    Under ``segzero`` every setting is free. Under ``reference`` the reference's evaluation fixes them
    (SPEC section 9.1): the ``seg_zero`` prompt (its answers need a box, two points and ``<think>``), the
    box and both points for the segmenter, 1024 new tokens with no early stop on a runaway, and the frame the
    reasoner answers in (840 for the released checkpoints; a reasoner whose ``segzero.json`` records its frame
    keeps that one). The
    segmenter may be any: its default follows :func:`default_segmenter`, and naming another one measures
    the effect of the version.

    Args:
        config: the pipeline's settings with the model's filled in (a resolved
            :class:`segzero.config.PipelineConfig`).
        recorded: what the reasoner's ``segzero.json`` records (:func:`segzero.hub.read_model_meta`), if known.

    Raises:
        InputError: an unknown protocol, or a setting that contradicts it.
    """
    if check_protocol(config.protocol) == SEGZERO:
        return
    recorded = recorded or {}
    own_frame = recorded.get("reasoner_frame") or REASONER_FRAME
    fixed = {
        "prompt": (DEFAULT_PROMPT, "answers need a bbox, two points and a <think> block, as the seg_zero prompt asks"),
        "segmenter_mode": ("both", "the segmenter gets the box and both points"),
        "max_new_tokens": (MAX_NEW_TOKENS, f"the reasoner writes up to {MAX_NEW_TOKENS} tokens"),
        "frame": (own_frame, f"answers are mapped from the {own_frame} frame the reasoner answers in"),
        "stop_runaway": (False, "every completion runs to its end or to the token budget"),
    }  # fmt: skip
    if getattr(config, "coordinates", None) not in (None, "pixels"):  # a pipeline with coordinate conventions
        raise InputError(
            f"--coordinates {config.coordinates} contradicts --protocol reference, which maps answers written "
            "in pixels of the reasoner's view (Qwen2.5-VL); evaluate this reasoner with --protocol segzero."
        )
    for name, (wanted, why) in fixed.items():
        value = getattr(config, name, None)
        if value is None or value == wanted:
            continue
        if recorded.get("prompt" if name == "prompt" else "") == value:
            raise InputError(
                f"The reasoner's segzero.json asks for the prompt {value!r}, which contradicts --protocol "
                f"reference, where {why}; evaluate this reasoner with --protocol segzero."
            )
        option = "--" + name.replace("_", "-")
        if value is True:  # a switch: --stop-runaway, not "--stop-runaway True"
            raise InputError(f"{option} contradicts --protocol reference, where {why}; drop {option}.")
        raise InputError(f"{option} {value} contradicts --protocol reference, where {why}; drop {option}.")
