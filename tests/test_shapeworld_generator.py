"""ShapeWorld generator: determinism, exact masks, unambiguous requests, splits, ReasonSeg export.

The request checker below is written independently of the generator: it reads only the request
text and the shapes' attributes, and decides which shapes the text selects.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segzero.data.records import Sample
from segzero.errors import InputError
from segzero.geometry import mask_iou, mask_to_box
from segzero.shapeworld.generator import RequestMix
from segzero.shapeworld import (
    MULTI_TARGET_TEMPLATES,
    NO_TARGET_TEMPLATES,
    PALETTE,
    SPLIT_SEEDS,
    TEMPLATES,
    export_reasonseg_folder,
    generate_scene,
    make_sample,
    make_split,
    mask_to_polygons,
)

SEEDS = st.integers(min_value=0, max_value=10**7)

# ------------------------------------------------------------------------------------------------
# The independent checker


CORNERS = {"circle": 0, "ellipse": 0, "triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
ROUND = {"circle", "ellipse"}
WORDS = {"no": 0, "three": 3, "four": 4, "five": 5, "six": 6}
COLOUR_OF = {"tomato": "red", "fire engine": "red", "grass": "green", "lime": "green", "sea": "blue",
             "blueberry": "blue", "banana": "yellow", "lemon": "yellow", "aubergine": "purple",
             "lavender": "purple", "carrot": "orange", "pumpkin": "orange"}
KIND_OF = {"coin": "circle", "wheel": "circle", "egg": "ellipse", "rugby": "ellipse", "pizza": "triangle",
           "yield": "triangle", "chessboard": "square", "sticky note": "square", "home plate": "pentagon",
           "pentagon building": "pentagon", "honeycomb": "hexagon", "hex nut": "hexagon",
           "starfish": "star", "badge": "star"}
COLOURS = "red|green|blue|yellow|purple|orange"
KIND_RE = "circle|ellipse|triangle|square|pentagon|hexagon|star"


def _lookup(table: dict[str, str], text: str) -> str:
    hits = {v for k, v in table.items() if k in text}
    assert len(hits) == 1, f"cannot read {text!r}"
    return hits.pop()


def _best(idx: list[int], value, want_max: bool, lead) -> set[int]:
    """The single index with the extreme value when it leads the runner-up as ``lead`` requires."""
    order = sorted(idx, key=value, reverse=want_max)
    if len(order) < 2:
        return set(order)
    return {order[0]} if lead(value(order[0]), value(order[1])) else set()


def _singular(text: str) -> str:
    """``"all the shapes that look like a coin"`` -> ``"the shape that looks like a coin"``."""
    text = "the " + text.removeprefix("all the ")
    for plural, one in (("shapes that have", "shape that has"), ("shapes that look", "shape that looks"),
                        (" are not ", " is not "), ("shapes", "shape")):
        text = text.replace(plural, one)
    return re.sub(rf"\b({KIND_RE})s\b", r"\1", text)


def select(scene, text: str) -> set[int]:
    """Indices of the shapes the request text picks out, re-derived from attributes alone."""
    if text.startswith("every "):
        return select(scene, "the " + text.removeprefix("every "))
    if text.startswith("all the "):
        return select(scene, _singular(text))
    shapes = scene.shapes
    every = list(range(len(shapes)))
    sel = lambda pred: {i for i in every if pred(shapes[i])}  # noqa: E731
    clear_gap = 0.05 * scene.size
    if m := re.fullmatch(rf"the (small|large) ({COLOURS}) ({KIND_RE})", text):
        return sel(lambda s: (s.size, s.colour, s.kind) == m.groups())
    if m := re.fullmatch(rf"the ({COLOURS}) ({KIND_RE})", text):
        return sel(lambda s: (s.colour, s.kind) == m.groups())
    if m := re.fullmatch(rf"the (small|large) ({KIND_RE})", text):
        return sel(lambda s: (s.size, s.kind) == m.groups())
    if m := re.fullmatch(rf"the ({KIND_RE})", text):
        return sel(lambda s: s.kind == m[1])
    if m := re.fullmatch(rf"the ({COLOURS}) shape", text):
        return sel(lambda s: s.colour == m[1])
    if m := re.fullmatch(r"the (small|large) shape", text):
        return sel(lambda s: s.size == m[1])
    if m := re.fullmatch(r"the (.+) (on the left|on the right|at the top|at the bottom)", text):
        group = sorted(select(scene, "the " + m[1]))
        axis = 0 if m[2] in ("on the left", "on the right") else 1
        high = m[2] in ("on the right", "at the bottom")
        return _best(group, lambda i: shapes[i].centre[axis], high, lambda a, b: abs(a - b) > 2 * clear_gap)
    if m := re.fullmatch(rf"the (largest|smallest) ({KIND_RE})", text):
        group = sorted(sel(lambda s: s.kind == m[2]))
        big = m[1] == "largest"
        return _best(group, lambda i: shapes[i].area, big, lambda a, b: max(a, b) >= 1.3 * min(a, b))
    if m := re.fullmatch(rf"the largest shape that is not ({COLOURS})", text):
        group = sorted(sel(lambda s: s.colour != m[1]))
        return _best(group, lambda i: shapes[i].area, True, lambda a, b: a >= 1.3 * b)
    if "corners" in text:
        assert all(s.kind in CORNERS for s in shapes), "corner questions must avoid stars"
        if m := re.fullmatch(rf"the shape with more corners than the ({KIND_RE})", text):
            refs = sel(lambda s: s.kind == m[1])
            return sel(lambda s: CORNERS[s.kind] > CORNERS[m[1]]) if len(refs) == 1 else set()
        if m := re.fullmatch(r"the shape (?:with|that has) the (most|fewest) corners", text):
            return _best(every, lambda i: CORNERS[shapes[i].kind], m[1] == "most", lambda a, b: a != b)
        m = re.fullmatch(r"the shape with (?:exactly )?(no|three|four|five|six) corners", text)
        return sel(lambda s: CORNERS[s.kind] == WORDS[m[1]])
    if "roll" in text:
        return sel(lambda s: s.kind in ROUND)
    if m := re.fullmatch(rf"the shape that has the same colour as the ({KIND_RE}) but is not the \1", text):
        refs = sel(lambda s: s.kind == m[1])
        if len(refs) != 1:
            return set()
        colour = shapes[next(iter(refs))].colour
        return sel(lambda s: s.colour == colour and s.kind != m[1])
    if m := re.fullmatch(rf"the shape (furthest from|closest to) the ({KIND_RE})", text):
        refs = sel(lambda s: s.kind == m[2])
        if len(refs) != 1:
            return set()
        ref = shapes[next(iter(refs))]
        others = [i for i in every if shapes[i].kind != m[2]]
        return _best(others, lambda i: math.dist(shapes[i].centre, ref.centre), m[1] == "furthest from",
                     lambda a, b: abs(a - b) >= clear_gap)
    if text == "the shape whose colour no other shape shares":
        counts = Counter(s.colour for s in shapes)
        return sel(lambda s: counts[s.colour] == 1)
    if text in ("the only shape whose form no other shape shares",
                "the shape whose form no other shape shares"):
        counts = Counter(s.kind for s in shapes)
        return sel(lambda s: counts[s.kind] == 1)
    if text.startswith("the shape that has the colour of "):
        colour = _lookup(COLOUR_OF, text)
        return sel(lambda s: s.colour == colour)
    if text.startswith("the shape that looks like "):
        kind = _lookup(KIND_OF, text)
        return sel(lambda s: s.kind == kind)
    raise AssertionError(f"the checker cannot read {text!r}")


# ------------------------------------------------------------------------------------------------
# Scenes


def _digest(sample: Sample) -> str:
    h = hashlib.sha256(np.asarray(sample.image).tobytes())
    h.update(sample.mask.tobytes())
    h.update(sample.request.encode())
    return h.hexdigest()


@pytest.mark.parametrize("options", [{}, {"allow_overlap": True}, {"textured_background": True}])
def test_same_seed_same_bytes_different_seeds_differ(options):
    a, b = generate_scene(123, **options), generate_scene(123, **options)
    assert a.image.tobytes() == b.image.tobytes()
    assert [s.mask.tobytes() for s in a.shapes] == [s.mask.tobytes() for s in b.shapes]
    images = {generate_scene(seed, **options).image.tobytes() for seed in range(20)}
    assert len(images) == 20
    for family in TEMPLATES:
        assert _digest(make_sample(5, family, **options)) == _digest(make_sample(5, family, **options))
        assert make_sample(5, family, **options).request == make_sample(5, family, **options).request
        assert len({_digest(make_sample(seed, family, **options)) for seed in range(10)}) == 10


def test_deterministic_across_processes():
    """String seeds and dict orders must not depend on the interpreter's hash randomisation."""
    code = ("import hashlib, numpy as np; from segzero.shapeworld import make_sample; "
            "s = make_sample(42, 'reasoning', textured_background=True); "
            "print(hashlib.sha256(np.asarray(s.image).tobytes() + s.request.encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(outs) == 1


def _check_scene(scene, size: int) -> None:
    assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
    seen = np.zeros((size, size), bool)
    for i, s in enumerate(scene.shapes):
        assert s.mask.shape == (size, size) and s.mask.dtype == bool
        # Exact masks: every visible pixel has the shape's colour, and the label map agrees.
        assert (scene.image[s.mask] == PALETTE[s.colour]).all()
        assert np.array_equal(s.mask, scene.labels == i + 1)
        assert s.area == int(s.mask.sum()) > 0 and s.bbox == mask_to_box(s.mask)
        assert not (seen & s.mask).any()
        seen |= s.mask
        x1, y1, x2, y2 = s.bbox
        assert x1 >= 0 and y1 >= 0 and x2 < size and y2 < size
        assert s.n_corners == {**CORNERS, "star": 10}[s.kind] and s.can_roll == (s.kind in ROUND)
        if scene.allow_overlap:
            assert s.area >= 0.6 * s.full_area
        else:
            assert s.area == s.full_area
            assert x1 <= s.centre[0] <= x2 and y1 <= s.centre[1] <= y2
            # Not too tiny: at least 14 px across at 112 px.
            assert max(x2 - x1, y2 - y1) + 1 >= 14 * size / 112
    # Background pixels keep no palette colour, so shapes are the only saturated things.
    background = scene.image[~seen]
    for rgb in PALETTE.values():
        assert not (background == rgb).all(axis=1).any()
    larges = [s.full_area for s in scene.shapes if s.size == "large"]
    smalls = [s.full_area for s in scene.shapes if s.size == "small"]
    if larges and smalls:
        assert min(larges) >= 2.4 * max(smalls)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, overlap=st.booleans(), textured=st.booleans(), size=st.sampled_from([112, 224]))
def test_masks_are_exact(seed, overlap, textured, size):
    scene = generate_scene(seed, size=size, allow_overlap=overlap, textured_background=textured)
    assert 2 <= len(scene.shapes) <= 4
    _check_scene(scene, size)


def test_masks_disjoint_with_a_gap_without_overlap():
    for seed in range(30):
        scene = generate_scene(seed)
        kernel = np.ones((3, 3), np.uint8)
        for i, a in enumerate(scene.shapes):
            grown = cv2.dilate(a.mask.astype(np.uint8), kernel).astype(bool)
            for b in scene.shapes[i + 1:]:
                assert not (grown & b.mask).any()


def test_overlap_happens_when_allowed():
    overlapped = sum(any(s.area < s.full_area for s in generate_scene(seed, allow_overlap=True).shapes)
                     for seed in range(40))
    assert overlapped >= 5


def test_bad_arguments_are_refused():
    with pytest.raises(InputError):
        generate_scene(0, size=20)
    with pytest.raises(InputError):
        generate_scene(0, n_shapes=(3, 2))
    with pytest.raises(InputError):
        make_sample(0, "poetry")
    with pytest.raises(InputError):
        make_sample(0, "referring", template="most_corners")
    with pytest.raises(InputError):
        list(make_split("holdout", 1, "referring"))
    with pytest.raises(InputError):
        list(make_split("val", 2, "referring", seed_offset=len(SPLIT_SEEDS["val"]) - 1))


# ------------------------------------------------------------------------------------------------
# Requests and samples


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_requests_select_exactly_their_target_and_every_template_is_reached(family):
    used = Counter()
    for seed in range(120):
        options = {"allow_overlap": seed % 5 == 1, "textured_background": seed % 3 == 0}
        sample = make_sample(seed, family, **options)
        scene = generate_scene(sample.extra["scene_seed"], **options)
        chosen = select(scene, sample.request)
        assert len(chosen) == 1, (seed, sample.request, chosen)
        (i,) = chosen
        assert np.array_equal(sample.mask.astype(bool), scene.shapes[i].mask), (seed, sample.request)
        assert sample.extra["template"] in TEMPLATES[family]
        used[sample.extra["template"]] += 1
    assert set(used) == set(TEMPLATES[family])


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_each_template_can_be_forced(family):
    for name in TEMPLATES[family]:
        for seed in (3, 11):
            sample = make_sample(seed, family, template=name, size=224)
            scene = generate_scene(sample.extra["scene_seed"], size=224)
            assert sample.extra["template"] == name
            assert len(select(scene, sample.request)) == 1


def test_sample_fields():
    sample = make_sample(7, "reasoning")
    assert sample.id == "shapeworld-reasoning-00000007" and sample.source == "shapeworld"
    assert isinstance(sample.image, Image.Image) and sample.image.size == (112, 112)
    assert (sample.width, sample.height) == (112, 112)
    assert sample.mask.dtype == np.uint8 and set(np.unique(sample.mask)) == {0, 1}
    assert sample.boxes == [mask_to_box(sample.mask.astype(bool))] and sample.points == []
    assert sample.is_sentence is True and make_sample(7, "referring").is_sentence is False
    assert {"family", "template", "seed", "scene_seed", "explanation"} <= set(sample.extra)
    assert sample.extra["explanation"] and sample.request == sample.request.strip().lower()


# ------------------------------------------------------------------------------------------------
# Requests that match no shape or several


def _check_targets(sample, scene) -> None:
    """The request matches exactly ``extra["targets"]`` in its own scene, and the sample says so."""
    targets = sample.extra["targets"]
    assert select(scene, sample.request) == set(targets), (sample.id, sample.request)
    union = np.zeros((scene.size, scene.size), bool)
    for i in targets:
        union |= scene.shapes[i].mask
    assert sample.mask.dtype == np.uint8 and np.array_equal(sample.mask, union.astype(np.uint8))
    if not targets:
        assert sample.boxes == [] and sample.points == [] and not sample.mask.any()
        assert sample.extra["no_target"] is True and sample.extra["n_targets"] == 0
    elif len(targets) >= 2:
        assert sample.extra["n_targets"] == len(targets) and "no_target" not in sample.extra
        assert sample.boxes == [scene.shapes[i].bbox for i in targets]
        for (point,), i in zip(sample.points, targets, strict=True):
            assert scene.shapes[i].mask[point[1], point[0]]  # (x, y) inside that shape
    else:
        assert sample.boxes == [scene.shapes[targets[0]].bbox] and sample.points == []
        assert "no_target" not in sample.extra and "n_targets" not in sample.extra


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_target_free_and_multi_target_requests_match_exactly_their_shapes(family):
    counts, used = Counter(), Counter()
    for seed in range(150):
        options = {"allow_overlap": seed % 5 == 1, "textured_background": seed % 3 == 0}
        sample = make_sample(seed, family, no_target_share=0.4, multi_target_share=0.4, **options)
        _check_targets(sample, generate_scene(sample.extra["scene_seed"], **options))
        counts[min(len(sample.extra["targets"]), 2)] += 1
        used[sample.extra["template"]] += 1
    # About 40% / 20% / 40% of 150 (three standard errors apart from the edges).
    assert 40 <= counts[0] <= 80 and 12 <= counts[1] <= 48 and 40 <= counts[2] <= 80, counts
    assert set(NO_TARGET_TEMPLATES[family]) | set(MULTI_TARGET_TEMPLATES[family]) <= set(used)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, family=st.sampled_from(sorted(TEMPLATES)), overlap=st.booleans(),
       shapes=st.sampled_from([(2, 4), (1, 3), (3, 6)]))
def test_any_seed_with_shares_gives_requests_that_match_their_targets(seed, family, overlap, shapes):
    options = {"allow_overlap": overlap, "n_shapes": shapes}
    sample = make_sample(seed, family, no_target_share=0.5, multi_target_share=0.5, **options)
    _check_targets(sample, generate_scene(sample.extra["scene_seed"], **options))


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_each_target_free_and_multi_target_template_can_be_forced(family):
    for registry, want in ((NO_TARGET_TEMPLATES, 0), (MULTI_TARGET_TEMPLATES, 2)):
        for name in registry[family]:
            for seed in (3, 11):
                sample = make_sample(seed, family, template=name)
                assert sample.extra["template"] == name
                assert min(len(sample.extra["targets"]), 2) == want
                _check_targets(sample, generate_scene(sample.extra["scene_seed"]))


def test_shares_are_off_by_default_and_leave_single_target_samples_as_they_were():
    for family in TEMPLATES:
        for seed in range(40):
            plain = make_sample(seed, family)
            assert plain.extra["template"] in TEMPLATES[family] and len(plain.extra["targets"]) == 1
            off = make_sample(seed, family, no_target_share=0.0, multi_target_share=0.0)
            assert _digest(off) == _digest(plain)
            mixed = make_sample(seed, family, no_target_share=0.3, multi_target_share=0.3)
            if mixed.extra["template"] in TEMPLATES[family]:
                assert (_digest(mixed), mixed.boxes) == (_digest(plain), plain.boxes)
                assert mixed.extra == plain.extra
    split = list(make_split("val", 6, "reasoning", no_target_share=1.0))
    assert all(s.extra["no_target"] and s.extra["split"] == "val" for s in split)


@pytest.mark.parametrize("shares", [(-0.1, 0.0), (0.0, 1.5), (0.6, 0.5), (True, 0.0), ("half", 0.0)])
def test_bad_shares_are_refused(shares):
    with pytest.raises(InputError, match="share"):
        make_sample(0, "referring", no_target_share=shares[0], multi_target_share=shares[1])
    with pytest.raises(InputError, match="share"):
        RequestMix(*shares).check()


def test_an_unknown_template_names_every_known_one():
    with pytest.raises(InputError, match="every_colour"):
        make_sample(0, "referring", template="every_dog")
    with pytest.raises(InputError):
        make_sample(0, "referring", template="no_could_roll")  # a reasoning template


# ------------------------------------------------------------------------------------------------
# Splits


def test_split_templates_cycle_and_match_one_template_per_seed():
    templates = ("closest_to_kind", "could_roll")
    cycled = list(make_split("val", 4, "reasoning", seed_offset=7, templates=templates))
    assert [s.extra["template"] for s in cycled] == ["closest_to_kind", "could_roll"] * 2
    for i, sample in enumerate(cycled):
        (alone,) = make_split("val", 1, "reasoning", seed_offset=7 + i, template=templates[i % 2])
        assert (sample.id, sample.request, _digest(sample)) == (alone.id, alone.request, _digest(alone))
    with pytest.raises(InputError, match="either template or templates"):
        list(make_split("val", 1, "reasoning", template="could_roll", templates=templates))


def test_split_seed_ranges_are_disjoint_and_scenes_too():
    ranges = sorted(SPLIT_SEEDS.values(), key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        assert a.stop <= b.start
    val = list(make_split("val", 3, "referring"))
    test = list(make_split("test", 3, "referring", seed_offset=2))
    assert [s.extra["seed"] for s in val] == [10_000_000, 10_000_001, 10_000_002]
    assert [s.extra["seed"] for s in test] == [10_100_002, 10_100_003, 10_100_004]
    assert all(s.extra["split"] == "val" and s.id.startswith("shapeworld-val-") for s in val)
    for split, samples in (("val", val), ("test", test)):
        for s in samples:
            assert s.extra["scene_seed"] // 1000 in SPLIT_SEEDS[split]
    assert not {_digest(s) for s in val} & {_digest(s) for s in test}


# ------------------------------------------------------------------------------------------------
# ReasonSeg export


def _lisa_mask(record: dict, height: int, width: int) -> np.ndarray:
    """LISA's reader: polygons filled in decreasing area order, outline drawn too; target 1, ignore 255."""
    items = []
    for shape in record["shapes"]:
        pts = np.array([shape["points"]], dtype=np.int32)
        area = int(cv2.fillPoly(np.zeros((height, width), np.uint8), pts, 1).sum())
        items.append((area, pts, 255 if "ignore" in shape["label"] else 1))
    mask = np.zeros((height, width), np.uint8)
    for _, pts, value in sorted(items, key=lambda t: -t[0]):
        cv2.polylines(mask, pts, True, value, 1)
        cv2.fillPoly(mask, pts, value)
    return mask


def test_reasonseg_export_roundtrip(tmp_path):
    samples = [make_sample(seed, family, allow_overlap=seed % 2 == 0, textured_background=seed % 3 == 0)
               for seed in range(12) for family in sorted(TEMPLATES)]
    export_reasonseg_folder(samples, tmp_path)
    for sample in samples:
        record = json.loads((tmp_path / f"{sample.id}.json").read_text())
        assert record["text"] == [sample.request]
        assert record["is_sentence"] == (sample.extra["family"] == "reasoning")
        assert all(s["label"] == "target" and s["shape_type"] == "polygon" for s in record["shapes"])
        refilled = _lisa_mask(record, sample.height, sample.width)
        assert mask_iou(refilled == 1, sample.mask == 1) > 0.95
        image = np.asarray(Image.open(tmp_path / f"{sample.id}.jpg").convert("RGB")).astype(int)
        assert np.abs(image - np.asarray(sample.image).astype(int)).mean() < 4  # JPEG is lossy, a little


def test_polygons_handle_holes_and_several_parts():
    mask = np.zeros((60, 60), bool)
    cv2.circle(mask.view(np.uint8), (20, 20), 15, 1, -1)
    cv2.circle(mask.view(np.uint8), (20, 20), 6, 0, -1)  # a hole
    mask[40:55, 40:58] = True  # a second part
    mask[45:50, 45:50] = False  # with a hole of its own
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    refilled = _lisa_mask({"shapes": [{"label": "target", "points": p} for p in polygons]}, 60, 60)
    assert mask_iou(refilled == 1, mask) > 0.97
    assert not refilled[20, 20] and not refilled[47, 47]  # holes stay holes
