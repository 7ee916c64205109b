"""Ground-truth prompts from a mask (SPEC 5): exact values on hand-made masks, and a brute-force check."""

from __future__ import annotations

import numpy as np
import pytest

from segzero.frames import Frame, ObjectPrompt, to_reasoner_frame
from segzero.geometry import (
    component_prompts,
    distance_to_background,
    inscribed_point,
    mask_prompts,
    second_inscribed_point,
)
from tests.test_data_fixtures import random_rect_masks, rect


def brute_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside the mask, the image border counting as outside."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    by, bx = np.nonzero(~padded)
    by, bx = by - 1, bx - 1
    out = np.zeros(mask.shape)
    for y, x in zip(*np.nonzero(mask)):
        out[y, x] = np.sqrt(((bx - x) ** 2 + (by - y) ** 2).min())
    return out


def brute_prompts(mask: np.ndarray, method: str):
    """The documented rules, written the slow way."""
    d = brute_distance(mask)
    ys, xs = np.nonzero(d == d.max())
    cx, cy = xs.mean(), ys.mean()
    order = sorted(range(len(xs)), key=lambda i: ((xs[i] - cx) ** 2 + (ys[i] - cy) ** 2, ys[i], xs[i]))
    p1 = (int(xs[order[0]]), int(ys[order[0]]))
    my, mx = np.nonzero(mask)
    dist_p1 = np.sqrt((mx - p1[0]) ** 2 + (my - p1[1]) ** 2)
    if method == "inscribed":
        rest = mask.copy()
        inside = dist_p1 < d[p1[1], p1[0]]
        rest[my[inside], mx[inside]] = False
        d2 = brute_distance(rest) if rest.any() else np.zeros_like(d)
    else:
        far = dist_p1 > np.median(dist_p1)
        d2 = np.zeros_like(d)
        d2[my[far], mx[far]] = d[my[far], mx[far]]
    if d2.max() <= 0:
        return p1, p1
    ys, xs = np.nonzero(d2 == d2.max())
    order = sorted(
        range(len(xs)), key=lambda i: (-((xs[i] - p1[0]) ** 2 + (ys[i] - p1[1]) ** 2), ys[i], xs[i])
    )
    return p1, (int(xs[order[0]]), int(ys[order[0]]))


def to_840(box, points, size):
    mapped = to_reasoner_frame(ObjectPrompt(box=box, points=tuple(points), frame=Frame.image(size)))
    return mapped.box, mapped.points


def test_rectangle_exact_values_in_reasoner_frame():
    mask = rect((50, 100), 10, 5, 29, 14)  # 20 wide, 10 tall, in a 100x50 image
    box, (p1, p2) = mask_prompts(mask)
    assert box == (10, 5, 29, 14)
    # Distance 5 on rows 9-10, columns 14..25: the plateau's middle, first in row-major order.
    assert p1 == (19, 9)
    assert (p1, p2) == brute_prompts(mask, "inscribed")
    box_840, points_840 = to_840(box, (p1, p2), (100, 50))
    assert box_840 == (84, 84, 244, 235)  # int(10*8.4+.5), int(5*16.8+.5), int(29*8.4+.5), int(14*16.8+.5)
    assert points_840[0] == (160, 151)


def test_border_counts_as_boundary():
    mask = np.ones((7, 9), dtype=bool)  # the whole image is the mask
    dist = distance_to_background(mask)
    assert dist[0, 0] == 1 and dist[3, 4] == 4
    assert inscribed_point(mask) == (4, 3)


def test_l_shape_points_on_both_arms():
    mask = rect((40, 40), 0, 0, 9, 39) | rect((40, 40), 0, 30, 39, 39)
    box, (p1, p2) = mask_prompts(mask)
    assert box == (0, 0, 39, 39)
    assert (p1, p2) == brute_prompts(mask, "inscribed")
    assert mask[p1[1], p1[0]] and mask[p2[1], p2[0]]
    # The largest circle sits in the corner (radius 6); the next largest have radius 5 along both arms,
    # and the one farthest from the corner wins: the arms' ends tie, the upper one comes first.
    dist = distance_to_background(mask)
    assert p1 == (5, 34) and dist[34, 5] == 6
    assert p2 == (4, 4) and dist[4, 4] == 5


def test_two_blobs():
    mask = rect((30, 40), 2, 2, 11, 11) | rect((30, 40), 20, 15, 33, 28)
    box, (p1, p2) = mask_prompts(mask)
    assert box == (2, 2, 33, 28)  # the box spans both components
    assert p1 == (26, 21)  # centre of the larger square
    assert p2 == (6, 6)  # the smaller square holds the next largest circle
    assert component_prompts(mask) == [((20, 15, 33, 28), (26, 21)), ((2, 2, 11, 11), (6, 6))]
    assert component_prompts(mask, min_area=150) == [((20, 15, 33, 28), (26, 21))]


def test_tiny_masks_are_deterministic():
    one = np.zeros((5, 5), dtype=bool)
    one[2, 3] = True
    assert mask_prompts(one) == ((3, 2, 3, 2), ((3, 2), (3, 2)))
    assert mask_prompts(one, "reference") == ((3, 2, 3, 2), ((3, 2), (3, 2)))
    line = np.zeros((5, 15), dtype=bool)
    line[2, 2:13] = True
    assert mask_prompts(line) == ((2, 2, 12, 2), ((7, 2), (2, 2)))
    assert mask_prompts(line) == mask_prompts(line.copy())
    assert mask_prompts(np.zeros((4, 4), dtype=bool)) is None


@pytest.mark.parametrize("method", ["inscribed", "reference"])
def test_matches_brute_force_on_random_masks(method):
    for mask in random_rect_masks(seed=0, count=12):
        box, points = mask_prompts(mask, method)
        assert points == brute_prompts(mask, method)
        for x, y in points:
            assert mask[y, x]


def test_reference_heuristic_differs_from_inscribed():
    mask = rect((50, 100), 10, 5, 29, 14)
    _, (p1, p2_ref) = mask_prompts(mask, "reference")
    assert p2_ref == second_inscribed_point(mask, p1, "reference") == brute_prompts(mask, "reference")[1]
    with pytest.raises(ValueError):
        second_inscribed_point(mask, p1, "nope")
