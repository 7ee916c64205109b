"""segzero.drawing: masks that show on any colour, prompts on the pixels they name, text that fits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segzero.drawing import (
    CAPTION_LINES,
    MASK_PALETTE,
    MIN_SIDE,
    MIN_WIDTH,
    display_size,
    draw_mask,
    draw_overlay,
    font,
    legend_entries,
    line_height,
    resize_mask,
    shorten,
    wrap,
)
from segzero.frames import Frame, ObjectPrompt


def _disc(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (220, 30, 30), (128, 128, 128), *MASK_PALETTE])
def test_the_mask_stands_out_on_any_colour(colour):
    image = Image.new("RGB", (60, 40), colour)
    mask = _disc(40, 60)
    drawn = np.asarray(draw_mask(image, mask), dtype=float)
    inside, outside = drawn[mask].mean(axis=0), drawn[~mask].mean(axis=0)
    assert np.abs(inside - outside).sum() > 60  # tinted inside, dimmed outside: never the same colour
    # The border is traced in white inside and black outside, so one of them contrasts with any colour.
    from scipy import ndimage

    just_outside = ndimage.binary_dilation(mask) & ~mask
    assert (drawn[just_outside].max(axis=1) < 15).all()
    assert (drawn[mask].min(axis=1) > 240).sum() >= 0.5 * just_outside.sum()


def test_boxes_and_points_land_on_the_pixels_they_name_when_enlarged():
    image = Image.new("RGB", (10, 10), (128, 128, 128))
    obj = ObjectPrompt(box=(2, 2, 5, 5), points=((7, 7),), frame=Frame.image((10, 10)))
    drawn = np.asarray(draw_mask(image, np.zeros((10, 10), bool), [obj], size=(100, 100)))
    yellow = (drawn[..., 0] > 200) & (drawn[..., 1] > 180) & (drawn[..., 2] < 80)
    ys, xs = np.nonzero(yellow[:60, :60])
    assert xs.min() <= 21 and xs.max() >= 58  # box pixels 2..5 cover 20..59 at 10x
    assert yellow[75, 75]  # the point at pixel (7, 7) is drawn at its centre, (75, 75)
    with pytest.raises(ValueError, match="image's pixels"):
        draw_mask(image, np.zeros((10, 10), bool), [ObjectPrompt(box=(1, 1, 2, 2), frame=Frame.reasoner(840))])


def test_small_images_are_enlarged_smoothly_and_large_ones_shrunk():
    assert display_size((112, 112)) == (MIN_SIDE, MIN_SIDE)
    assert display_size((4000, 3000)) == (1024, 768)
    assert display_size((600, 500)) == (600, 500)
    mask = np.zeros((8, 8), bool)
    mask[np.triu_indices(8)] = True  # a diagonal edge
    big = resize_mask(mask, (80, 80))
    blocky = np.kron(mask, np.ones((10, 10), bool))
    assert big.shape == (80, 80) and (big != blocky).any()  # not the 10x10 staircase
    assert abs(int(big.sum()) - int(blocky.sum())) < 0.1 * blocky.sum()


def test_text_keeps_every_word_and_fits_its_width():
    fnt = font()
    text = "Thinking: " + " ".join(f"word{i}" for i in range(200)) + " " + "x" * 400
    lines = wrap(text, fnt, 300)
    assert all(fnt.getlength(line) <= 300 for line in lines)
    assert "".join(" ".join(lines).split()) == "".join(text.split())  # nothing dropped, spaces kept
    assert wrap("one\n\ntwo", fnt, 300) == ["one", "", "two"]
    short = shorten(lines, 5, fnt, 300)
    assert len(short) == 5 and short[-1].endswith(" ...")


def test_an_overlay_of_a_thumbnail_has_no_tall_strip_of_text():
    image = Image.new("RGB", (40, 30), (90, 140, 200))
    mask = _disc(30, 40)
    obj = ObjectPrompt(box=(10, 5, 30, 25), points=((20, 15),), frame=Frame.image((40, 30)))
    out = draw_overlay(image, mask, [obj], "Request: the cup\nThinking: " + "a fairly long thought " * 200)
    panel = display_size((40, 30))
    assert out.width == max(MIN_WIDTH, 2 * panel[0] + 30)
    lh = line_height(font())
    assert out.height <= panel[1] + (CAPTION_LINES + 2) * lh + 50
    assert [e.label for e in legend_entries(mask, [obj], MASK_PALETTE[0])] == ["mask", "box", "points"]
    assert [e.label for e in legend_entries(np.zeros((2, 2), bool), [], MASK_PALETTE[0])] == ["mask: empty"]
