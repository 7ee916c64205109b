"""Coordinate frames, the positional prompts that carry one, and the one mapping between frames.

Every box and point in segzero says which frame its numbers are in:

- the **reasoner frame**: the square grid the reasoner answers on. Two things are kept apart here: the
  *view*, the square image the reasoner is shown (``REASONER_FRAME`` pixels on a side: the image resized,
  aspect ratio not kept), and the *grid* its coordinates are on, which :func:`answer_grid` derives
  from the view and the family's coordinate convention: the view's own pixels for Qwen2/2.5-VL
  (``Frame.reasoner(840)``), a grid of ``RELATIVE_GRID`` units over the image for Qwen3-VL
  (``Frame.reasoner(1000)``, whatever size the image was shown at);
- the **image frame**: the original image's own pixels, ``(width, height)``.

An :class:`ObjectPrompt` holds its :class:`Frame`, and :func:`map_object` is the only way from one
frame to the other. Mapping an object into the frame it is already in, or handing a segmenter
prompts that are not in its image's pixels, fails loudly instead of silently scaling twice or not
at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from segzero.defaults import COORDINATES, REASONER_FRAME, RELATIVE_GRID

Box = tuple[float, float, float, float]
Point = tuple[float, float]
FrameKind = Literal["reasoner", "image"]


@dataclass(frozen=True)
class Frame:
    """Where a box's or point's numbers are measured.

    Attributes:
        kind: ``"reasoner"`` (the reasoner's answer grid) or ``"image"`` (an image's own pixels).
        width, height: the frame's size in its own units (``REASONER_FRAME`` x ``REASONER_FRAME`` for
            Seg-Zero's reasoner, the image's size for an image).
    """

    kind: FrameKind
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.kind not in ("reasoner", "image"):
            raise ValueError(f"a frame is 'reasoner' or 'image', got {self.kind!r}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"a frame needs a positive size, got {self.width}x{self.height}")

    @classmethod
    def reasoner(cls, side: int = REASONER_FRAME) -> Frame:
        """The reasoner's square answer grid of ``side`` units."""
        return cls("reasoner", int(side), int(side))

    @classmethod
    def image(cls, size: tuple[int, int]) -> Frame:
        """An image's pixels; ``size`` is ``(width, height)`` as PIL gives it."""
        return cls("image", int(size[0]), int(size[1]))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def __str__(self) -> str:
        return f"{self.kind} frame {self.width}x{self.height}"


@dataclass(frozen=True, kw_only=True)
class ObjectPrompt:
    """Prompts for one object, in a named frame (every field by keyword).

    Attributes:
        box: ``(x1, y1, x2, y2)``, or None when the answer had no box. Read by segzero's rules,
            ``x1 <= x2`` and ``y1 <= y2``; read by the reference's (:func:`segzero.answer.parse_answer_reference`),
            the corners stay in the order the answer gave them.
        points: positive clicks ``((x, y), ...)``; may be empty when the answer had only a box.
        frame: the frame both are measured in.
        label: the short noun phrase the answer names the object with (the ``concept`` prompt asks for
            it; SAM 3's text interface takes it in the ``concept`` segmenter mode), or None.
    """

    box: Box | None
    points: tuple[Point, ...] = ()
    frame: Frame
    label: str | None = None

    @classmethod
    def from_lists(cls, box: Any | None, points: Any, frame: Frame, label: str | None = None) -> ObjectPrompt:
        """From plain numbers (``[x1, y1, x2, y2]`` or None, ``[[x, y], ...]``) in ``frame``."""
        return cls(
            box=None if box is None else tuple(box),  # type: ignore[arg-type]
            points=tuple((p[0], p[1]) for p in points),
            frame=frame,
            label=label,
        )

    def to_json(self) -> dict[str, Any]:
        """``{"box": [x1, y1, x2, y2] | None, "points": [[x, y], ...]}`` (and ``"label"`` when the answer named
        one); the holder's key names the frame."""
        out: dict[str, Any] = {"box": list(self.box) if self.box else None, "points": [list(p) for p in self.points]}
        if self.label is not None:
            out["label"] = self.label
        return out


def scale(value: float, src: int, dst: int) -> int:
    """Map one coordinate from a side of ``src`` units to one of ``dst``: ``floor(v * dst / src + 0.5)``."""
    return int(math.floor(value * dst / src + 0.5))


#: The rounding rules of :func:`map_object`, one per protocol (:data:`segzero.protocols.PROTOCOLS`).
ROUNDINGS = ("segzero", "reference")


def reference_scale(value: float, src: int, dst: int, *, into_reasoner: bool) -> int:
    """One coordinate mapped as the reference release maps it (SPEC section 9), not clamped.

    Into a reasoner frame (its data preparation): ``int(v * (dst / src) + 0.5)``. Out of it (its
    evaluation): ``round(int(v) * (dst / src))``, the value truncated to an integer first, the product
    rounded half to even (``round(2.5) == 2``). Both multiply by the factor ``dst / src`` already rounded
    to a float, as the reference does.

    Raises:
        ValueError: the value or the product is not finite (the reference's ``int`` or ``round`` raises).
    """
    try:
        if into_reasoner:
            return int(value * (dst / src) + 0.5)
        return round(int(value) * (dst / src))
    except (OverflowError, ValueError):
        raise ValueError(f"the coordinate {value!r} cannot be mapped to a whole pixel") from None


def map_object(obj: ObjectPrompt, to: Frame, *, rounding: str = "segzero") -> ObjectPrompt:
    """The one mapping between frames: ``obj`` re-expressed in ``to``, coordinates rounded to integers.

    ``rounding="segzero"``: each coordinate becomes ``floor(v * to_side / from_side + 0.5)``, then is
    clamped: into ``[0, W - 1]`` for an image frame (a pixel inside the image), into ``[0, side]`` for
    the reasoner frame. ``rounding="reference"``: the reference release's rule
    (:func:`reference_scale`), with no clamping, and a box keeps its corners in the order given.
    Reasoner -> image is how answers reach the segmenter (SPEC section 2); image -> reasoner is how
    ground truth is built (SPEC section 5); image -> image draws prompts on a resized copy of the image.

    Raises:
        ValueError: ``obj`` is already in ``to`` (mapping it again would scale it twice), an unknown
            rounding, or (reference rounding) a coordinate too large to map.
    """
    src = obj.frame
    if src == to:
        raise ValueError(
            f"the object is already in the {to}; mapping it again would scale it twice "
            "(a mapping is done once, from the frame the object names)"
        )
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if rounding == "reference":
        into = to.kind == "reasoner"

        def x(v: float) -> int:
            return reference_scale(v, src.width, to.width, into_reasoner=into)

        def y(v: float) -> int:
            return reference_scale(v, src.height, to.height, into_reasoner=into)

    else:
        mx, my = (to.width - 1, to.height - 1) if to.kind == "image" else (to.width, to.height)

        def x(v: float) -> int:
            return min(max(scale(v, src.width, to.width), 0), mx)

        def y(v: float) -> int:
            return min(max(scale(v, src.height, to.height), 0), my)

    box = None
    if obj.box is not None:
        x1, y1, x2, y2 = obj.box
        box = (x(x1), y(y1), x(x2), y(y2))
    return ObjectPrompt(box=box, points=tuple((x(px), y(py)) for px, py in obj.points), frame=to, label=obj.label)


def to_image_frame(obj: ObjectPrompt, image_size: tuple[int, int], *, rounding: str = "segzero") -> ObjectPrompt:
    """A reasoner-frame object in the pixels of an image of ``image_size`` ``(width, height)``."""
    return map_object(obj, Frame.image(image_size), rounding=rounding)


def answer_grid(view: int, coordinates: str) -> Frame:
    """The grid a reasoner answers on, given the side of the square ``view`` it is shown and its family's
    ``coordinates`` convention: ``Frame.reasoner(view)`` for ``pixels`` (Qwen2/2.5-VL), the
    ``RELATIVE_GRID``-unit grid for ``relative`` (Qwen3-VL: 0-1000 over the image, whatever the view).

    Raises:
        ValueError: an unknown convention.
    """
    if coordinates not in COORDINATES:
        raise ValueError(f"coordinates must be one of {COORDINATES}, got {coordinates!r}")
    return Frame.reasoner(view if coordinates == "pixels" else RELATIVE_GRID)


def to_reasoner_frame(obj: ObjectPrompt, side: int = REASONER_FRAME) -> ObjectPrompt:
    """An image-frame object in the reasoner's ``side`` x ``side`` frame (its own frame says the image size)."""
    return map_object(obj, Frame.reasoner(side))
