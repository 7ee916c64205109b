"""ShapeWorld scenes, requests, splits and a ReasonSeg-layout export (optionally ReasonSeg-like: images
that are not square and ignore regions, :func:`like_reasonseg`).

Everything here is pure and deterministic: a scene is a function of ``(seed, size, options)`` only,
and a sample of ``(seed, family, size, options)``. Randomness comes from :class:`random.Random`
(its stream is stable across Python versions), never from global state.

Frames: every coordinate here is in the *image* frame (pixels of the ``size`` x ``size`` image,
``x`` to the right, ``y`` down). Boxes are inclusive ``(x1, y1, x2, y2)`` as in :mod:`segzero.geometry`.

Rendering: each shape is a polygon (circles and ellipses are 64-gons, sub-pixel accurate) filled
with ``cv2.fillPoly`` and anti-aliasing off into a ``uint8`` label map, in painter's order (later
shapes on top). The image takes each shape's palette colour exactly where the label map holds
that shape, so a shape's mask is exactly the set of pixels painted in its colour. With
``allow_overlap=True`` a mask is the *visible* part of its shape, and every shape keeps at least
:data:`MIN_VISIBLE_FRACTION` of its area visible.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from segzero.data.records import IGNORE, Sample
from segzero.errors import InputError
from segzero.geometry import mask_to_box

# ---------------------------------------------------------------------------------------------
# Vocabulary

#: Named colours, RGB; saturated and far apart so that "red" and "orange" never look alike.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (30, 160, 60),
    "blue": (30, 75, 215),
    "yellow": (240, 205, 0),
    "purple": (135, 45, 175),
    "orange": (250, 125, 10),
}

#: Shape kinds: number of corners (polygon vertices; a star's 5 tips and 5 inner corners make 10)
#: and whether the shape could roll.
KINDS: dict[str, tuple[int, bool]] = {
    "circle": (0, True),
    "ellipse": (0, True),
    "triangle": (3, False),
    "square": (4, False),
    "pentagon": (5, False),
    "hexagon": (6, False),
    "star": (10, False),
}

SIZE_CLASSES = ("small", "large")

#: Side of the square with the same area as a shape, as a fraction of the image side. All kinds of
#: one size class have about the same area (+-6% in side), so "large" and "small" are clearly
#: apart (area ratio 2.4 or more) whatever the kinds; a small shape is 14+ px across at 112 px.
SIZE_SIDE = {"small": 0.14, "large": 0.26}
SIZE_JITTER = 0.06

#: In overlapping scenes, the least fraction of each shape that stays visible.
MIN_VISIBLE_FRACTION = 0.6

#: Plain background colour.
BACKGROUND = (228, 228, 228)

DEFAULT_SIZE = 112

FAMILIES = ("referring", "reasoning")

# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class Shape:
    """One drawn shape.

    Attributes:
        kind: a key of :data:`KINDS`.
        colour: a key of :data:`PALETTE`.
        size: ``"small"`` or ``"large"``.
        centre: ``(x, y)`` float, the geometric centre of the drawn shape (image frame).
        bbox: inclusive ``(x1, y1, x2, y2)`` of the visible mask.
        mask: bool ``(H, W)``: the shape's visible pixels.
        n_corners: polygon vertices (0 for circle and ellipse, 10 for a star).
        can_roll: True for circles and ellipses.
        area: visible pixels (``mask.sum()``).
        full_area: pixels the shape would cover if nothing were on top of it.
        angle: rotation in degrees.
    """

    kind: str
    colour: str
    size: str
    centre: tuple[float, float]
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    n_corners: int
    can_roll: bool
    area: int
    full_area: int
    angle: float

    @property
    def rgb(self) -> tuple[int, int, int]:
        return PALETTE[self.colour]

    @property
    def name(self) -> str:
        """Plain words for the shape, e.g. ``"small red triangle"``."""
        return f"{self.size} {self.colour} {self.kind}"


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: uint8 ``(size, size, 3)`` RGB.
        shapes: in painter's order (later ones on top).
        seed: the seed the scene was drawn from.
        size: image side in pixels.
        labels: uint8 ``(size, size)``: 0 background, ``i + 1`` where ``shapes[i]`` is visible.
        allow_overlap, textured_background: the options it was drawn with.
    """

    image: np.ndarray
    shapes: list[Shape]
    seed: int
    size: int
    labels: np.ndarray
    allow_overlap: bool = False
    textured_background: bool = False


class Request(NamedTuple):
    """A request about a scene: its text, the indices of its target shapes, a toy reasoning text."""

    text: str
    targets: tuple[int, ...]
    explanation: str
    template: str


# ---------------------------------------------------------------------------------------------
# Scenes


def _unit_polygon(kind: str) -> np.ndarray:
    """Float ``(N, 2)`` outline of a kind, centred on 0, pointing up, before scaling and rotation."""
    if kind in ("circle", "ellipse"):
        t = np.linspace(0.0, 2 * math.pi, 64, endpoint=False)
        ry = 1.0 if kind == "circle" else 0.55
        return np.stack([np.cos(t), ry * np.sin(t)], axis=1)
    if kind == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.48)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    n = KINDS[kind][0]
    start = math.pi / 4 if kind == "square" else -math.pi / 2  # square axis-aligned, others point up
    t = start + np.arange(n) * 2 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


_UNIT = {kind: (_unit_polygon(kind), _polygon_area(_unit_polygon(kind))) for kind in KINDS}

#: Rotation range in degrees: small for polygons so they read upright ("a square", not "a diamond").
_MAX_TILT = {"circle": 0.0, "ellipse": 90.0, "triangle": 15.0, "square": 12.0, "pentagon": 15.0,
             "hexagon": 15.0, "star": 12.0}


def _outline(kind: str, size_class: str, image_size: int, angle: float, jitter: float) -> np.ndarray:
    """Float ``(N, 2)`` outline centred on 0 with the size class's area, rotated by ``angle`` degrees."""
    unit, unit_area = _UNIT[kind]
    side = SIZE_SIDE[size_class] * image_size * jitter
    poly = unit * math.sqrt(side * side / unit_area)
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return poly @ rot.T


_SHIFT = 4  # fillPoly fixed-point bits: vertices keep 1/16 px precision


def _fill(shape_of: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    """Bool mask of a float polygon, rasterised by cv2.fillPoly without anti-aliasing."""
    canvas = np.zeros(shape_of, np.uint8)
    pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def _background(rng: random.Random, size: int, textured: bool) -> np.ndarray:
    """Plain light grey, or a low-saturation grey texture (blotches + stripes + grain)."""
    if not textured:
        return np.broadcast_to(np.array(BACKGROUND, np.uint8), (size, size, 3)).copy()
    base = rng.uniform(185, 225)
    grid = np.frombuffer(rng.randbytes(6 * 6), np.uint8).reshape(6, 6).astype(np.float32)
    blotches = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) / 255.0 - 0.5
    theta, period, phase = rng.uniform(0, math.pi), rng.uniform(6, 16), rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period + phase)
    grain = np.frombuffer(rng.randbytes(size * size), np.uint8).reshape(size, size) / 255.0 - 0.5
    grey = base + 40 * blotches + 7 * stripes + 16 * grain
    tint = np.array([rng.uniform(-6, 6) for _ in range(3)], np.float32)
    return np.clip(grey[..., None] + tint, 0, 255).round().astype(np.uint8)


def _draw_attributes(rng: random.Random, previous: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    """(kind, colour, size) for the next shape. Half the time a near copy of an earlier shape that
    differs in one attribute, so scenes have the distractors that referring expressions need."""
    kinds, colours = sorted(KINDS), sorted(PALETTE)
    if previous and rng.random() < 0.5:
        kind, colour, size = rng.choice(previous)
        which = rng.randrange(3)
        if which == 0:
            kind = rng.choice([k for k in kinds if k != kind])
        elif which == 1:
            colour = rng.choice([c for c in colours if c != colour])
        else:
            size = "large" if size == "small" else "small"
        return kind, colour, size
    return rng.choice(kinds), rng.choice(colours), rng.choice(SIZE_CLASSES)


_PLACE_TRIES = 60
_SCENE_TRIES = 50


def generate_scene(
    seed: int,
    size: int = DEFAULT_SIZE,
    n_shapes: tuple[int, int] = (2, 4),
    allow_overlap: bool = False,
    textured_background: bool = False,
) -> Scene:
    """Draw a scene of ``n_shapes[0]..n_shapes[1]`` shapes (inclusive), deterministic in its arguments.

    Args:
        seed: any int; the same arguments give a byte-identical image.
        size: image side in pixels (square image), at least 56.
        n_shapes: least and most number of shapes.
        allow_overlap: let shapes overlap (masks are then the visible parts); otherwise shapes keep
            a gap of at least 2 px (more for large images) between them.
        textured_background: a grey texture instead of a plain background.

    Returns:
        A :class:`Scene`; shapes are in painter's order.
    """
    if size < 56:
        raise InputError(f"ShapeWorld images must be at least 56 px wide (got {size}); pass a larger size.")
    lo, hi = n_shapes
    if not 1 <= lo <= hi <= 8:
        raise InputError(f"n_shapes must be (least, most) with 1 <= least <= most <= 8, got {n_shapes}.")
    rng = random.Random(seed)
    gap = max(2, size // 40)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    for _ in range(_SCENE_TRIES):
        scene = _try_scene(rng, seed, size, rng.randint(lo, hi), allow_overlap, textured_background, kernel)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not place {n_shapes} shapes in a {size} px image; "
                       "use fewer shapes or a larger size")


def _try_scene(rng: random.Random, seed: int, size: int, n: int, allow_overlap: bool, textured: bool,
               kernel: np.ndarray) -> Scene | None:
    """One attempt at placing ``n`` shapes; None when a shape found no room."""
    background = _background(rng, size, textured)
    labels = np.zeros((size, size), np.uint8)
    full_masks: list[np.ndarray] = []
    placed: list[tuple[str, str, str, tuple[float, float], float]] = []
    for _ in range(n):
        kind, colour, size_class = _draw_attributes(rng, [p[:3] for p in placed])
        angle = rng.uniform(-_MAX_TILT[kind], _MAX_TILT[kind])
        outline = _outline(kind, size_class, size, angle, rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER))
        reach = np.abs(outline).max(axis=0)
        for _ in range(_PLACE_TRIES):
            cx = rng.uniform(reach[0] + 1, size - 2 - reach[0])
            cy = rng.uniform(reach[1] + 1, size - 2 - reach[1])
            full = _fill((size, size), outline + (cx, cy))
            if _fits(full, labels, full_masks, allow_overlap, kernel):
                break
        else:
            return None
        full_masks.append(full)
        labels[full] = len(full_masks)
        placed.append((kind, colour, size_class, (cx, cy), angle))
    image = background
    shapes = []
    for i, ((kind, colour, size_class, centre, angle), full) in enumerate(zip(placed, full_masks)):
        mask = labels == i + 1
        image[mask] = PALETTE[colour]
        corners, can_roll = KINDS[kind]
        shapes.append(Shape(kind, colour, size_class, centre, mask_to_box(mask), mask, corners, can_roll,
                            int(mask.sum()), int(full.sum()), angle))
    return Scene(image, shapes, seed, size, labels, allow_overlap, textured)


def _fits(full: np.ndarray, labels: np.ndarray, full_masks: list[np.ndarray], allow_overlap: bool,
          kernel: np.ndarray) -> bool:
    if not allow_overlap:
        return not (cv2.dilate(full.astype(np.uint8), kernel).astype(bool) & (labels > 0)).any()
    # The new shape goes on top: every earlier shape must keep enough of itself visible.
    for i, earlier in enumerate(full_masks):
        visible = int(((labels == i + 1) & ~full).sum())
        if visible < MIN_VISIBLE_FRACTION * earlier.sum():
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Requests
#
# A template is a function (scene, rng) -> Request | None: None when the scene does not allow the
# template to name a single target unambiguously. Comparisons keep a margin so the answer is clear
# to the eye, not only to the arithmetic.

Template = Callable[[Scene, random.Random], "Request | None"]


#: Least centre distance along an axis for "on the left" etc., as a fraction of the image side.
POSITION_MARGIN = 0.2
#: Least lead of the furthest/closest shape over the runner-up, as a fraction of the image side.
DISTANCE_MARGIN = 0.08
#: Least area ratio between the largest (smallest) shape and the runner-up.
AREA_RATIO = 1.5

_NUMBER_WORDS = {0: "no", 3: "three", 4: "four", 5: "five", 6: "six"}

#: World knowledge for the reasoning family: things of a colour, things of a form.
COLOUR_THINGS = {
    "red": ("a ripe tomato", "a fire engine"),
    "green": ("fresh grass", "a lime"),
    "blue": ("the deep sea", "a blueberry"),
    "yellow": ("a ripe banana", "a lemon"),
    "purple": ("an aubergine", "lavender flowers"),
    "orange": ("a carrot", "a pumpkin"),
}
KIND_THINGS = {
    "circle": ("a coin", "a wheel"),
    "ellipse": ("an egg", "a rugby ball seen from the side"),
    "triangle": ("a slice of pizza", "a yield road sign"),
    "square": ("a chessboard tile", "a sticky note"),
    "pentagon": ("the home plate in baseball", "the outline of the pentagon building"),
    "hexagon": ("a honeycomb cell", "a hex nut"),
    "star": ("a starfish", "a sheriff's badge"),
}


def _count(scene: Scene, key: Callable[[Shape], object]) -> Counter:
    return Counter(key(s) for s in scene.shapes)


def _unique(scene: Scene, key: Callable[[Shape], object]) -> list[int]:
    counts = _count(scene, key)
    return [i for i, s in enumerate(scene.shapes) if counts[key(s)] == 1]


def _extreme(values: list[float], want_max: bool, ratio: float | None = None,
             margin: float | None = None) -> int | None:
    """Index of the unique extreme value with a clear lead over the runner-up, or None."""
    if len(values) < 2:
        return None
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=want_max)
    best, second = values[order[0]], values[order[1]]
    if ratio is not None:
        lead_ok = best >= ratio * second if want_max else second >= ratio * best
    else:
        lead_ok = abs(best - second) >= (margin or 1e-9)
    return order[0] if lead_ok else None


def _dist(a: Shape, b: Shape) -> float:
    return math.dist(a.centre, b.centre)


def _listing(scene: Scene, idx: Iterable[int]) -> str:
    return ", ".join(f"the {scene.shapes[i].name}" for i in idx)


# Referring family ------------------------------------------------------------------------------


def _ref_kind(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.kind)
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    return Request(f"the {s.kind}", (i,), f"There is only one {s.kind} in the picture: the {s.name}.", "kind")


def _ref_colour(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.colour)
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    return Request(f"the {s.colour} shape", (i,), f"Only one shape is {s.colour}: the {s.kind}.", "colour")


def _ref_colour_kind(scene: Scene, rng: random.Random) -> Request | None:
    kinds = _count(scene, lambda s: s.kind)
    options = [i for i in _unique(scene, lambda s: (s.colour, s.kind)) if kinds[scene.shapes[i].kind] > 1]
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    return Request(f"the {s.colour} {s.kind}", (i,),
                   f"There are {kinds[s.kind]} {s.kind}s; only one of them is {s.colour}.", "colour_kind")


def _ref_size_kind(scene: Scene, rng: random.Random) -> Request | None:
    kinds = _count(scene, lambda s: s.kind)
    options = [i for i in _unique(scene, lambda s: (s.size, s.kind)) if kinds[scene.shapes[i].kind] > 1]
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    return Request(f"the {s.size} {s.kind}", (i,),
                   f"There are {kinds[s.kind]} {s.kind}s; only one of them is {s.size}: the {s.colour} one.",
                   "size_kind")


def _ref_size_colour_kind(scene: Scene, rng: random.Random) -> Request | None:
    pairs = _count(scene, lambda s: (s.colour, s.kind))
    options = [i for i in _unique(scene, lambda s: (s.size, s.colour, s.kind))
               if pairs[(scene.shapes[i].colour, scene.shapes[i].kind)] > 1]
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    return Request(f"the {s.name}", (i,),
                   f"There are several {s.colour} {s.kind}s; the {s.size} one is meant.", "size_colour_kind")


_SIDES = {"left": (0, False), "right": (0, True), "top": (1, False), "bottom": (1, True)}
_SIDE_PHRASE = {"left": "on the left", "right": "on the right",
                "top": "at the top", "bottom": "at the bottom"}


def _positional(scene: Scene, rng: random.Random, key: Callable[[Shape], str], noun: Callable[[str], str],
                template: str) -> Request | None:
    """Among exactly two shapes sharing ``key``, the one on a side, when they are clearly apart."""
    counts = _count(scene, key)
    options = []
    for value in sorted(v for v, c in counts.items() if c == 2):
        a, b = (i for i, s in enumerate(scene.shapes) if key(s) == value)
        for side, (axis, high) in _SIDES.items():
            ca, cb = scene.shapes[a].centre[axis], scene.shapes[b].centre[axis]
            if abs(ca - cb) >= POSITION_MARGIN * scene.size:
                options.append((value, side, a if (ca > cb) == high else b))
    if not options:
        return None
    value, side, i = rng.choice(options)
    phrase = f"the {noun(value)} {_SIDE_PHRASE[side]}"
    return Request(phrase, (i,), f"There are two {noun(value)}s; the {scene.shapes[i].name} is the one "
                                 f"{_SIDE_PHRASE[side]}.", template)


def _ref_position_colour(scene: Scene, rng: random.Random) -> Request | None:
    return _positional(scene, rng, lambda s: s.colour, lambda c: f"{c} shape", "position_colour")


def _ref_position_kind(scene: Scene, rng: random.Random) -> Request | None:
    return _positional(scene, rng, lambda s: s.kind, lambda k: k, "position_kind")


def _ref_largest_kind(scene: Scene, rng: random.Random) -> Request | None:
    options = []
    for kind in sorted(_count(scene, lambda s: s.kind)):
        members = [i for i, s in enumerate(scene.shapes) if s.kind == kind]
        for word, want_max in (("largest", True), ("smallest", False)):
            j = _extreme([scene.shapes[i].area for i in members], want_max, ratio=AREA_RATIO)
            if j is not None:
                options.append((kind, word, members[j]))
    if not options:
        return None
    kind, word, i = rng.choice(options)
    return Request(f"the {word} {kind}", (i,),
                   f"Comparing the {kind}s, the {scene.shapes[i].colour} one is clearly the {word}.",
                   "largest_kind")


# Reasoning family ------------------------------------------------------------------------------


def _corner_counts(scene: Scene) -> list[int] | None:
    # A star has 5 tips but 10 corners: people count either, so corner questions avoid stars.
    if any(s.kind == "star" for s in scene.shapes):
        return None
    return [s.n_corners for s in scene.shapes]


def _corner_story(scene: Scene) -> str:
    return "Counting corners: " + ", ".join(
        f"the {s.colour} {s.kind} has {s.n_corners}" for s in scene.shapes) + "."


def _rsn_most_corners(scene: Scene, rng: random.Random) -> Request | None:
    corners = _corner_counts(scene)
    i = None if corners is None else _extreme(corners, True, margin=1)
    if i is None:
        return None
    text = rng.choice(["the shape with the most corners", "the shape that has the most corners"])
    return Request(text, (i,), _corner_story(scene) + f" The {scene.shapes[i].kind} has the most.",
                   "most_corners")


def _rsn_fewest_corners(scene: Scene, rng: random.Random) -> Request | None:
    corners = _corner_counts(scene)
    i = None if corners is None else _extreme(corners, False, margin=1)
    if i is None:
        return None
    text = rng.choice(["the shape with the fewest corners", "the shape that has the fewest corners"])
    return Request(text, (i,), _corner_story(scene) + f" The {scene.shapes[i].kind} has the fewest.",
                   "fewest_corners")


def _rsn_n_corners(scene: Scene, rng: random.Random) -> Request | None:
    corners = _corner_counts(scene)
    if corners is None:
        return None
    counts = Counter(corners)
    options = [i for i, c in enumerate(corners) if counts[c] == 1]
    if not options:
        return None
    i = rng.choice(options)
    n = corners[i]
    text = "the shape with no corners" if n == 0 else f"the shape with exactly {_NUMBER_WORDS[n]} corners"
    story = _corner_story(scene) + f" Only the {scene.shapes[i].kind} has {n}."
    return Request(text, (i,), story, "n_corners")


def _rsn_could_roll(scene: Scene, rng: random.Random) -> Request | None:
    rollers = [i for i, s in enumerate(scene.shapes) if s.can_roll]
    if len(rollers) != 1:
        return None
    i = rollers[0]
    text = rng.choice(["the one that could roll", "the shape that could roll down a slope",
                       "the shape that would roll away if pushed"])
    return Request(text, (i,), f"Only round shapes roll; the {scene.shapes[i].name} is the only round one, "
                               "the others have corners and would tip over.", "could_roll")


def _rsn_same_colour_as_kind(scene: Scene, rng: random.Random) -> Request | None:
    options = []
    for k in _unique(scene, lambda s: s.kind):
        ref = scene.shapes[k]
        others = [i for i, s in enumerate(scene.shapes) if i != k and s.colour == ref.colour]
        if len(others) == 1:
            options.append((k, others[0]))
    if not options:
        return None
    k, i = rng.choice(options)
    ref, s = scene.shapes[k], scene.shapes[i]
    return Request(f"the shape that has the same colour as the {ref.kind} but is not the {ref.kind}", (i,),
                   f"The {ref.kind} is {ref.colour}. The other {ref.colour} shape is the {s.size} {s.kind}.",
                   "same_colour_as_kind")


def _relative_distance(scene: Scene, rng: random.Random, want_max: bool, template: str) -> Request | None:
    options = []
    for k in _unique(scene, lambda s: s.kind):
        others = [i for i in range(len(scene.shapes)) if i != k]
        j = _extreme([_dist(scene.shapes[i], scene.shapes[k]) for i in others], want_max,
                     margin=DISTANCE_MARGIN * scene.size)
        if j is not None:
            options.append((k, others[j]))
    if not options:
        return None
    k, i = rng.choice(options)
    ref = scene.shapes[k]
    word = "furthest from" if want_max else "closest to"
    story = ", ".join(f"the {s.colour} {s.kind} is {_dist(s, ref):.0f} px away"
                      for j, s in enumerate(scene.shapes) if j != k)
    answer = scene.shapes[i]
    return Request(f"the shape {word} the {ref.kind}", (i,),
                   f"Measuring from the {ref.kind}: {story}. The {answer.colour} {answer.kind} is {word} it.",
                   template)


def _rsn_furthest_from_kind(scene: Scene, rng: random.Random) -> Request | None:
    return _relative_distance(scene, rng, True, "furthest_from_kind")


def _rsn_closest_to_kind(scene: Scene, rng: random.Random) -> Request | None:
    return _relative_distance(scene, rng, False, "closest_to_kind")


def _rsn_largest_not_colour(scene: Scene, rng: random.Random) -> Request | None:
    options = []
    for colour in sorted(_count(scene, lambda s: s.colour)):
        excluded = [i for i, s in enumerate(scene.shapes) if s.colour == colour]
        rest = [i for i, s in enumerate(scene.shapes) if s.colour != colour]
        # The clause must matter: some excluded shape is at least as large as the answer.
        j = _extreme([scene.shapes[i].area for i in rest], True, ratio=AREA_RATIO)
        if j is not None and max(scene.shapes[i].area for i in excluded) >= scene.shapes[rest[j]].area:
            options.append((colour, rest[j]))
    if not options:
        return None
    colour, i = rng.choice(options)
    rest = [j for j, s in enumerate(scene.shapes) if s.colour != colour]
    return Request(f"the largest shape that is not {colour}", (i,),
                   f"Leaving out the {colour} shapes leaves {_listing(scene, rest)}; "
                   f"the {scene.shapes[i].name} is clearly the largest of them.", "largest_not_colour")


def _twin_story(scene: Scene, key: Callable[[Shape], str], word: str) -> str:
    """Shape by shape, whether another shape shares its ``key`` (a step at a time, as corners are counted)."""
    counts = _count(scene, key)
    return f"Looking for a twin {word}: " + ", ".join(
        f"the {s.colour} {s.kind} has {'one' if counts[key(s)] > 1 else 'none'}" for s in scene.shapes) + "."


def _rsn_odd_colour_out(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.colour)
    if len(scene.shapes) < 3 or len(options) != 1:
        return None
    i = options[0]
    return Request("the shape whose colour no other shape shares", (i,),
                   _twin_story(scene, lambda s: s.colour, "colour")
                   + f" Only the {scene.shapes[i].kind} is {scene.shapes[i].colour}.", "odd_colour_out")


def _rsn_odd_kind_out(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.kind)
    if len(scene.shapes) < 3 or len(options) != 1:
        return None
    i = options[0]
    return Request("the only shape whose form no other shape shares", (i,),
                   _twin_story(scene, lambda s: s.kind, "form")
                   + f" Only the {scene.shapes[i].kind} has no twin.", "odd_kind_out")


def _rsn_world_colour(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.colour)
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    thing = rng.choice(COLOUR_THINGS[s.colour])
    return Request(f"the shape that has the colour of {thing}", (i,),
                   f"{thing[0].upper()}{thing[1:]} is {s.colour}; the only {s.colour} shape is the {s.kind}.",
                   "world_colour")


def _rsn_world_kind(scene: Scene, rng: random.Random) -> Request | None:
    options = _unique(scene, lambda s: s.kind)
    if not options:
        return None
    i = rng.choice(options)
    s = scene.shapes[i]
    thing = rng.choice(KIND_THINGS[s.kind])
    return Request(f"the shape that looks like {thing}", (i,),
                   f"{thing[0].upper()}{thing[1:]} has the outline of a {s.kind}; there is one {s.kind}, "
                   f"the {s.colour} one.", "world_kind")


#: Template registry: family -> template name -> function(scene, rng) -> Request | None.
TEMPLATES: dict[str, dict[str, Template]] = {
    "referring": {
        "kind": _ref_kind,
        "colour": _ref_colour,
        "colour_kind": _ref_colour_kind,
        "size_kind": _ref_size_kind,
        "size_colour_kind": _ref_size_colour_kind,
        "position_colour": _ref_position_colour,
        "position_kind": _ref_position_kind,
        "largest_kind": _ref_largest_kind,
    },
    "reasoning": {
        "most_corners": _rsn_most_corners,
        "fewest_corners": _rsn_fewest_corners,
        "n_corners": _rsn_n_corners,
        "could_roll": _rsn_could_roll,
        "same_colour_as_kind": _rsn_same_colour_as_kind,
        "furthest_from_kind": _rsn_furthest_from_kind,
        "closest_to_kind": _rsn_closest_to_kind,
        "largest_not_colour": _rsn_largest_not_colour,
        "odd_colour_out": _rsn_odd_colour_out,
        "odd_kind_out": _rsn_odd_kind_out,
        "world_colour": _rsn_world_colour,
        "world_kind": _rsn_world_kind,
    },
}


def describe(scene: Scene, family: str, rng: random.Random, template: str | None = None) -> Request | None:
    """A request of ``family`` about ``scene`` naming exactly one shape, or None if the scene allows none.

    With ``template`` given only that template is tried; otherwise templates are tried in a random order.
    """
    templates = _family(family)
    if template is not None:
        if template not in templates:
            raise InputError(f"unknown {family} template {template!r}; choose one of {sorted(templates)}.")
        return templates[template](scene, rng)
    names = sorted(templates)
    rng.shuffle(names)
    for name in names:
        request = templates[name](scene, rng)
        if request is not None:
            return request
    return None


def _family(family: str) -> dict[str, Template]:
    if family not in TEMPLATES:
        raise InputError(f"unknown request family {family!r}; choose 'referring' or 'reasoning'.")
    return TEMPLATES[family]


# ---------------------------------------------------------------------------------------------
# Samples and splits

#: Scenes tried per sample: scene seeds are ``seed * SCENES_PER_SEED + attempt``, so disjoint sample
#: seed ranges give disjoint scenes.
SCENES_PER_SEED = 1000
_TEMPLATE_ATTEMPTS = 400


def make_sample(
    seed: int,
    family: str,
    size: int = DEFAULT_SIZE,
    template: str | None = None,
    n_shapes: tuple[int, int] = (2, 4),
    allow_overlap: bool = False,
    textured_background: bool = False,
) -> Sample:
    """One ShapeWorld :class:`~segzero.data.records.Sample`, deterministic in its arguments.

    The template is drawn uniformly from the family (unless given); scenes with seeds
    ``seed * SCENES_PER_SEED + 0, 1, ...`` are drawn until one lets that template name a single shape.

    Args:
        seed: a non-negative int (see :data:`SPLIT_SEEDS` for the split ranges).
        family: ``"referring"`` (short attribute/position expressions, RefCOCOg-like) or
            ``"reasoning"`` (questions that need a step of reasoning or world knowledge, ReasonSeg-like).
        size: image side in pixels.
        template: force a template (a key of ``TEMPLATES[family]``).
        n_shapes, allow_overlap, textured_background: passed to :func:`generate_scene`.

    Returns:
        A Sample in the image frame: ``mask`` uint8 0/1 of the target's visible pixels, ``boxes`` its one
        inclusive box, ``points`` empty, ``is_sentence`` True for the reasoning family, ``extra`` with
        ``family``, ``template``, ``seed``, ``scene_seed``, ``explanation`` (a toy reasoning text),
        ``shapes`` (every shape's ``{"name", "box"}``, painter's order, image frame) and ``targets``
        (indices into ``shapes`` of what the request means).
    """
    if seed < 0:
        raise InputError(f"ShapeWorld seeds are non-negative ints, got {seed}.")
    templates = _family(family)
    rng = random.Random(f"shapeworld:{family}:{seed}")
    name = template if template is not None else rng.choice(sorted(templates))
    options = dict(size=size, n_shapes=n_shapes, allow_overlap=allow_overlap,
                   textured_background=textured_background)
    request = None
    for attempt in range(_TEMPLATE_ATTEMPTS):
        scene = generate_scene(seed * SCENES_PER_SEED + attempt, **options)
        request = describe(scene, family, rng, name)
        if request is not None:
            break
    else:
        if template is not None:
            raise RuntimeError(f"template {template!r} found no fitting scene in {_TEMPLATE_ATTEMPTS} tries; "
                               "use more shapes or another template")
        # Not seen in practice: fall back to any template the scene allows.
        for attempt in range(_TEMPLATE_ATTEMPTS, SCENES_PER_SEED):
            scene = generate_scene(seed * SCENES_PER_SEED + attempt, **options)
            request = describe(scene, family, rng)
            if request is not None:
                break
        else:
            raise RuntimeError(f"no {family} request fits the scenes of seed {seed}; use more shapes")
    return _to_sample(scene, request, family, seed)


def _to_sample(scene: Scene, request: Request, family: str, seed: int) -> Sample:
    target = np.zeros((scene.size, scene.size), bool)
    for i in request.targets:
        target |= scene.shapes[i].mask
    return Sample(
        id=f"shapeworld-{family}-{seed:08d}",
        image=Image.fromarray(scene.image),
        request=request.text,
        width=scene.size,
        height=scene.size,
        mask=target.astype(np.uint8),
        boxes=[mask_to_box(target)],
        points=[],
        source="shapeworld",
        is_sentence=family == "reasoning",
        extra={"family": family, "template": request.template, "seed": seed, "scene_seed": scene.seed,
               "explanation": request.explanation,
               "shapes": [{"name": s.name, "box": [int(v) for v in s.bbox]} for s in scene.shapes],
               "targets": [int(i) for i in request.targets]},
    )


#: Sample seeds of each split (half-open ranges); scene seeds follow as ``seed * SCENES_PER_SEED + k``
#: with ``k < SCENES_PER_SEED``, so splits share no scene.
SPLIT_SEEDS: dict[str, range] = {
    "train": range(0, 10_000_000),
    "val": range(10_000_000, 10_100_000),
    "test": range(10_100_000, 10_200_000),
}


def make_split(
    name: str,
    n: int,
    family: str,
    size: int = DEFAULT_SIZE,
    seed_offset: int = 0,
    templates: Sequence[str] = (),
    **options,
) -> Iterator[Sample]:
    """Yield ``n`` samples of split ``name`` with seeds ``SPLIT_SEEDS[name].start + seed_offset + 0..n-1``.

    ``options`` go to :func:`make_sample` (``n_shapes``, ``allow_overlap``, ``textured_background``,
    ``template``). With ``templates`` sample ``i`` uses template ``templates[i % len(templates)]``.
    Each sample's ``extra["split"]`` is set and its id becomes ``shapeworld-{split}-{family}-{seed}``.
    """
    if name not in SPLIT_SEEDS:
        raise InputError(f"unknown ShapeWorld split {name!r}; choose one of {sorted(SPLIT_SEEDS)}.")
    seeds = SPLIT_SEEDS[name]
    if n < 0 or seed_offset < 0 or seeds.start + seed_offset + n > seeds.stop:
        raise InputError(f"split {name!r} holds seeds {seeds.start}..{seeds.stop - 1}; n={n} with "
                         f"seed_offset={seed_offset} does not fit, use a smaller n or offset.")
    _family(family)
    if templates and "template" in options:
        raise InputError("give make_split either template or templates, not both")
    for i, seed in enumerate(range(seeds.start + seed_offset, seeds.start + seed_offset + n)):
        if templates:
            options["template"] = templates[i % len(templates)]
        sample = make_sample(seed, family, size=size, **options)
        sample.id = f"shapeworld-{name}-{family}-{seed:08d}"
        sample.extra["split"] = name
        yield sample


# ---------------------------------------------------------------------------------------------
# ReasonSeg-layout export


def mask_to_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Polygons ``[[x, y], ...]`` (pixel centres, image frame) whose filling reproduces a bool mask.

    Each connected part gives one polygon through its boundary pixels (``cv2.findContours``). A hole
    is joined to its outer boundary by a zero-width bridge, so a single polygon filled with the
    even-odd rule (``cv2.fillPoly``) leaves the hole out; the bridge costs at most a one-pixel line
    across the hole when the polygon's outline is drawn too (as LISA's reader does).
    """
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole; handled with its parent
            continue
        outer = contour[:, 0, :]
        child = hierarchy[i][2]
        while child != -1:
            outer = _bridge(outer, contours[child][:, 0, :])
            child = hierarchy[child][0]
        polygons.append(outer.tolist())
    return polygons


def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Splice ``hole`` into ``outer`` at their closest pair of vertices."""
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
    a, b = np.unravel_index(int(np.argmin(d)), d.shape)
    hole_loop = np.concatenate([hole[b:], hole[: b + 1]])
    return np.concatenate([outer[: a + 1], hole_loop, outer[a:]])


#: Sizes ``(width, height)`` :func:`like_reasonseg` stretches scenes to, by seed: wider, taller, wider.
LIKE_REASONSEG_SIZES = ((168, 112), (112, 154), (200, 130))

#: Width in pixels of the ignore ring :func:`like_reasonseg` draws around the target of every other sample.
IGNORE_RING = 2


def like_reasonseg(sample: Sample) -> Sample:
    """``sample`` made like a ReasonSeg sample, so that every difference between the evaluation protocols
    shows on it (``docs/reproducing.md``):

    - its image and mask are stretched to a size that is not square, one of :data:`LIKE_REASONSEG_SIZES`
      by seed, with nearest-neighbour sampling, so the mask stays exactly the pixels painted in the
      target's colour; mapping answers out of the reasoner's square frame then needs a factor other
      than 1, where the protocols round differently;
    - samples with an even seed get an ignore region (255) around the target, a ring
      :data:`IGNORE_RING` pixels wide: its edge, ambiguous as ReasonSeg's ignore regions are. The
      protocols count it differently (left out, or as target).

    The default scenes (``segzero demo``, ``segzero shapeworld eval``) are never changed by this.
    """
    seed = int(sample.extra["seed"])
    width, height = LIKE_REASONSEG_SIZES[seed % len(LIKE_REASONSEG_SIZES)]
    image = np.asarray(sample.image if isinstance(sample.image, Image.Image) else Image.open(sample.image))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    target = cv2.resize((sample.mask == 1).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    mask = target.copy()
    ring = 0
    if seed % 2 == 0:
        ring = IGNORE_RING
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
        mask[(cv2.dilate(target, kernel) > 0) & (target == 0)] = IGNORE
    return Sample(
        id=sample.id,
        image=Image.fromarray(image),
        request=sample.request,
        width=width,
        height=height,
        mask=mask,
        boxes=[mask_to_box(target.astype(bool))],
        points=[],
        source=sample.source,
        is_sentence=sample.is_sentence,
        extra={**sample.extra, "like_reasonseg": {"size": [width, height], "ignore_ring": ring}},
    )


def export_reasonseg_folder(samples: Iterable[Sample], out_dir: str | Path, jpeg_quality: int = 95) -> Path:
    """Write samples in LISA's ReasonSeg layout: ``NAME.jpg`` + ``NAME.json`` per sample.

    The JSON holds ``text`` ([request]), ``is_sentence``, ``shapes`` (one polygon per connected part of
    the mask, labelled ``"target"`` (mask value 1) or ``"ignore"`` (255), ``shape_type`` ``"polygon"``)
    and ``source: "shapeworld"``, by which ``segzero eval`` tells the export from the paper's benchmark.

    Exactness: the JPEG (4:4:4, quality ``jpeg_quality``) is lossy, so pixel colours move by a few
    levels; the polygons pass through boundary-pixel centres, so refilling them the way LISA does
    (``fillPoly`` + 1-px ``polylines``) gives back a hole-free mask exactly (IoU 1.0 on ShapeWorld
    masks), and a mask with holes up to a one-pixel bridge per hole (the test asks for IoU > 0.95).

    Returns:
        ``out_dir``.
    """
    from segzero.evaluation.results import SHAPEWORLD_ORIGIN

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample.id)
        image = sample.image if isinstance(sample.image, Image.Image) else Image.open(sample.image)
        image.convert("RGB").save(out / f"{name}.jpg", quality=jpeg_quality, subsampling=0)
        shapes = []
        if sample.mask is not None:
            for value, label in ((1, "target"), (IGNORE, "ignore")):
                for poly in mask_to_polygons(sample.mask == value):
                    shapes.append({"label": label, "labels": [label], "points": poly, "shape_type": "polygon",
                                   "group_id": None, "flags": {}, "image_name": f"{name}.jpg"})
        record = {"text": [sample.request], "is_sentence": bool(sample.is_sentence), "shapes": shapes,
                  "source": SHAPEWORLD_ORIGIN}  # fmt: skip
        (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    return out
