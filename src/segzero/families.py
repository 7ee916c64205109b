"""The model families segzero runs, and what each one implies.

A checkpoint's family is read from the ``model_type`` of its ``config.json``. For a reasoner it fixes
how the model writes coordinates (:data:`segzero.defaults.COORDINATES`) and how many pixels one of its
image tokens covers; for a segmenter, which transformers classes serve its box-and-point interface
and its text (concept) interface. A checkpoint of any other family is refused in one sentence that
names the supported ones.

Coordinate conventions, as the families were trained (the Qwen technical reports):

- Qwen2-VL and Qwen2.5-VL: absolute pixels of the image the model was shown (Seg-Zero's 840x840
  view). Qwen2-VL's own grounding pretraining used a 0-1000 grid, but Seg-Zero trains it (the paper's
  Qwen2-VL-2B reasoner) in pixels of the 840 view like Qwen2.5-VL, and segzero follows the paper;
  its recipes' data is in pixels;
- Qwen3-VL (dense and MoE): relative, integers on a 0-1000 grid over the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from segzero.errors import ModelLoadError


@dataclass(frozen=True)
class ReasonerFamily:
    """A family of vision-language reasoners.

    Attributes:
        name: as people write it, e.g. ``"Qwen3-VL"``.
        model_types: the ``config.json`` ``model_type`` values of its checkpoints.
        coordinates: ``"pixels"`` or ``"relative"`` (:data:`segzero.defaults.COORDINATES`).
        token_pixels: side in pixels of the image square one language-model token covers
            (vision patch x spatial merge): 28 for Qwen2/2.5-VL, 32 for Qwen3-VL.
    """

    name: str
    model_types: tuple[str, ...]
    coordinates: str
    token_pixels: int


@dataclass(frozen=True)
class SegmenterFamily:
    """A family of promptable segmenters.

    Attributes:
        name: as people write it, e.g. ``"SAM 3"``.
        positional: ``model_type`` values whose checkpoints serve box and point prompts.
        concept: ``model_type`` values whose checkpoints serve text (noun phrase) prompts.
        positional_classes / concept_classes: the transformers model and processor class names of each
            interface, ``()`` when the family has none.
    """

    name: str
    positional: tuple[str, ...]
    concept: tuple[str, ...]
    positional_classes: tuple[str, str]
    concept_classes: tuple[str, str] | tuple[()] = ()

    @property
    def model_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.positional + self.concept))


REASONER_FAMILIES = (
    ReasonerFamily("Qwen2-VL", ("qwen2_vl",), "pixels", 28),
    ReasonerFamily("Qwen2.5-VL", ("qwen2_5_vl",), "pixels", 28),
    ReasonerFamily("Qwen3-VL", ("qwen3_vl", "qwen3_vl_moe"), "relative", 32),
)

SEGMENTER_FAMILIES = (
    SegmenterFamily("SAM 2", ("sam2", "sam2_video"), (), ("Sam2Model", "Sam2Processor")),
    # facebook/sam3 is a sam3_video checkpoint holding both the tracker (boxes, points) and the detector
    # (text); a sam3_tracker or sam3 checkpoint holds one of them.
    SegmenterFamily(
        "SAM 3",
        ("sam3_video", "sam3_tracker"),
        ("sam3_video", "sam3"),
        ("Sam3TrackerModel", "Sam3TrackerProcessor"),
        ("Sam3Model", "Sam3Processor"),
    ),
)


def reasoner_family(model_type: str | None, name: str) -> ReasonerFamily:
    """The family of a reasoner whose ``config.json`` says ``model_type``.

    Raises:
        ModelLoadError: a family segzero does not run, naming the ones it does.
    """
    return _find(REASONER_FAMILIES, model_type, "reasoner", name)


def segmenter_family(model_type: str | None, name: str) -> SegmenterFamily:
    """The family of a segmenter whose ``config.json`` says ``model_type``.

    Raises:
        ModelLoadError: a family segzero does not run, naming the ones it does.
    """
    return _find(SEGMENTER_FAMILIES, model_type, "segmenter", name)


def _find(families, model_type: str | None, what: str, name: str):
    for family in families:
        if model_type in family.model_types:
            return family
    listing = ", ".join(f"{f.name} ({', '.join(f.model_types)})" for f in families)
    raise ModelLoadError(f"The {what} {name} is a {model_type!r} model; segzero runs the {what} families {listing}.")
