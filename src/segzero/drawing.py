"""Pictures of results (PIL): a mask drawn so it shows on any colour, boxes and points, a legend, text.

One function draws a mask with its prompts on an image (:func:`draw_mask`); every picture segzero
writes is built from it: the overlay of a result (:func:`draw_overlay`: the image beside the drawn
mask, a legend and the request and reasoning underneath), the demo's picture, the server's overlay and
the panels of an evaluation's contact sheet.

How a mask stays visible whatever the image: the outside is dimmed, the inside tinted with the colour
of a palette furthest from the masked pixels' own, and the border traced in that colour between a
white and a black line. Small images are enlarged smoothly (Lanczos for the image, the mask's edge
interpolated) so a 112 px scene is not a blur of blocks; large ones are shrunk to a viewable size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segzero.frames import Frame, ObjectPrompt

RGB = tuple[int, int, int]

#: The longer side of each panel of an overlay: small images are enlarged to at least this, large ones
#: shrunk to at most :data:`MAX_SIDE` (the mask PNG keeps the image's own size).
MIN_SIDE = 480
MAX_SIDE = 1024
#: Text size in pixels; below about 13 px the embedded font's spaces shrink to nothing.
FONT_SIZE = 15
#: Most lines of text under an overlay; the full text is in the result's JSON.
CAPTION_LINES = 16
#: The narrowest overlay, so that the text under a thumbnail is not a tall narrow strip.
MIN_WIDTH = 720

PAD = 10
#: Tints a mask can take; :func:`mask_colour` picks the one furthest from what the mask covers.
MASK_PALETTE: tuple[RGB, ...] = ((255, 40, 200), (0, 200, 255), (60, 90, 255), (40, 220, 90), (255, 60, 40))
PROMPT_COLOUR: RGB = (255, 220, 0)  # boxes and points, each edged in black
IGNORE_COLOUR: RGB = (110, 110, 110)
TEXT_COLOUR: RGB = (20, 20, 20)
LABEL_COLOUR: RGB = (90, 90, 90)


def font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """Pillow's embedded scalable font at ``size`` px (its fixed bitmap font when built without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def line_height(fnt: ImageFont.ImageFont) -> int:
    """Pixels from one line of text to the next."""
    top, bottom = fnt.getbbox("Ag|")[1::2]
    return int(bottom - top) + 5


def wrap(text: str, fnt: ImageFont.ImageFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``fnt``; its own line breaks are kept,
    runs of spaces become one, and a word wider than a line is cut."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while fnt.getlength(word) > width:  # a word longer than a line (a path, a JSON blob): cut it
                cut = max(1, int(len(word) * width / fnt.getlength(word)))
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if line and fnt.getlength(candidate) > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def shorten(lines: list[str], most: int, fnt: ImageFont.ImageFont, width: int) -> list[str]:
    """At most ``most`` lines; when some are dropped the last kept one ends with an ellipsis."""
    if len(lines) <= most:
        return lines
    last = lines[most - 1]
    while last and fnt.getlength(last + " ...") > width:
        last = last[:-1]
    return lines[: most - 1] + [last.rstrip() + " ..."]


def display_size(size: tuple[int, int], low: int = MIN_SIDE, high: int = MAX_SIDE) -> tuple[int, int]:
    """``size`` ``(width, height)`` scaled so its longer side is within ``[low, high]`` (unchanged if it is)."""
    w, h = size
    longer = max(w, h)
    factor = low / longer if longer < low else high / longer if longer > high else 1.0
    return max(1, round(w * factor)), max(1, round(h * factor))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool ``(H, W)`` mask at ``size`` ``(width, height)``: its edge interpolated when enlarged, so an
    enlarged mask has smooth borders rather than blocks."""
    mask = np.asarray(mask, dtype=bool)
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    plane = Image.fromarray(mask.astype(np.uint8) * 255)
    smooth = size[0] >= mask.shape[1]
    resampled = plane.resize(size, Image.Resampling.BILINEAR if smooth else Image.Resampling.BOX)
    return np.asarray(resampled) >= 128


def mask_colour(image: np.ndarray, mask: np.ndarray) -> RGB:
    """The palette colour furthest from the mean colour of the masked pixels."""
    if not mask.any():
        return MASK_PALETTE[0]
    mean = image[mask].reshape(-1, 3).mean(axis=0)
    return max(MASK_PALETTE, key=lambda c: float(((np.array(c) - mean) ** 2).sum()))


def _ring(mask: np.ndarray, inside: int, outside: int) -> np.ndarray:
    """Pixels within ``inside`` px inside the mask's border or ``outside`` px outside it."""
    from scipy import ndimage

    ring = np.zeros_like(mask)
    if inside:
        ring |= mask & ~ndimage.binary_erosion(mask, iterations=inside, border_value=1)
    if outside:
        ring |= ndimage.binary_dilation(mask, iterations=outside) & ~mask
    return ring


def draw_mask(
    image: Image.Image,
    mask: np.ndarray,
    objects: Sequence[ObjectPrompt] = (),
    *,
    size: tuple[int, int] | None = None,
    colour: RGB | None = None,
    ignore: np.ndarray | None = None,
    dim: bool = True,
) -> Image.Image:
    """The image with the mask made plain on any colour, boxes outlined and points marked.

    Args:
        image: the RGB image, ``(W, H)``.
        mask: bool ``(H, W)``.
        objects: boxes and points in the image's pixels (``Frame.image((W, H))``).
        size: ``(width, height)`` to draw at (default: the image's); the image is resampled (Lanczos),
            the mask's edge interpolated, and boxes and points placed on the pixels they name.
        colour: the mask's tint (default: :func:`mask_colour`).
        ignore: bool ``(H, W)`` of pixels that count neither way (hatched grey), or None.
        dim: dim what lies outside the mask, so that the mask stands out.

    Raises:
        ValueError: an object that is not in this image's pixels.
    """
    w, h = image.size
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (h, w):
        raise ValueError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
    frame = Frame.image((w, h))
    for obj in objects:
        if obj.frame != frame:
            raise ValueError(f"objects must be in the image's pixels ({frame}), got one in the {obj.frame}")
    size = size or (w, h)
    sx, sy = size[0] / w, size[1] / h
    resample = Image.Resampling.LANCZOS if size[0] >= w else Image.Resampling.BOX
    base = image.convert("RGB")
    base = base if size == (w, h) else base.resize(size, resample)
    arr = np.asarray(base, dtype=np.float32).copy()
    shown = resize_mask(mask, size)
    tint = np.array(colour or mask_colour(arr, shown), dtype=np.float32)
    if shown.any():
        if dim:
            arr[~shown] *= 0.5
        arr[shown] = 0.6 * arr[shown] + 0.4 * tint
        line = max(2, round(max(size) / 160))
        arr[_ring(shown, 0, 1)] = 0
        arr[_ring(shown, line, 0)] = tint
        arr[_ring(shown, line + 1, 0) & ~_ring(shown, line, 0)] = 255
    if ignore is not None and np.asarray(ignore).any():
        region = resize_mask(ignore, size)
        stripes = (np.add.outer(np.arange(size[1]), np.arange(size[0])) // 3) % 3 == 0
        arr[region] = 0.4 * arr[region] + 0.6 * 200
        arr[region & stripes] = IGNORE_COLOUR
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(size) / 250))
    radius = max(4, round(max(size) / 90))
    for obj in objects:
        if obj.box is not None:
            x1, y1, x2, y2 = obj.box  # inclusive pixels: the drawn box covers them whole
            # corners in any order (the reference protocol keeps the answer's order)
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            rect = (x1 * sx, y1 * sy, (x2 + 1) * sx - 1, (y2 + 1) * sy - 1)
            draw.rectangle(rect, outline=(0, 0, 0), width=width + 2)
            draw.rectangle(rect, outline=PROMPT_COLOUR, width=width)
        for x, y in obj.points:
            cx, cy = (x + 0.5) * sx, (y + 0.5) * sy
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=PROMPT_COLOUR,
                         outline=(0, 0, 0), width=2)  # fmt: skip
    return out


@dataclass(frozen=True)
class LegendEntry:
    """One swatch of a legend: ``kind`` is ``"mask"`` (a tinted square), ``"box"``, ``"point"`` or
    ``"ignore"`` (hatched)."""

    kind: str
    label: str
    colour: RGB = PROMPT_COLOUR


def legend_entries(mask: np.ndarray, objects: Sequence[ObjectPrompt], colour: RGB, name: str = "mask") -> list[LegendEntry]:
    """The legend of what :func:`draw_mask` drew: the mask if any, boxes and points if any."""
    entries = [LegendEntry("mask", name if np.asarray(mask).any() else f"{name}: empty", colour)]
    if any(o.box is not None for o in objects):
        entries.append(LegendEntry("box", "box"))
    if any(o.points for o in objects):
        entries.append(LegendEntry("point", "points"))
    return entries


def draw_legend(draw: ImageDraw.ImageDraw, xy: tuple[int, int], entries: Sequence[LegendEntry], fnt) -> int:
    """Draw the swatches left to right from ``xy``; returns the height used."""
    x, y = xy
    side = line_height(fnt) - 5
    for entry in entries:
        box = (x, y, x + side, y + side)
        if entry.kind == "mask":
            draw.rectangle(box, fill=entry.colour, outline=(0, 0, 0))
        elif entry.kind == "box":
            draw.rectangle(box, outline=(0, 0, 0), width=4)
            draw.rectangle((x + 1, y + 1, x + side - 1, y + side - 1), outline=entry.colour, width=2)
        elif entry.kind == "point":
            draw.ellipse((x + 2, y + 2, x + side - 2, y + side - 2), fill=entry.colour, outline=(0, 0, 0), width=2)
        else:
            draw.rectangle(box, fill=(200, 200, 200), outline=(0, 0, 0))
            for k in range(0, 2 * side, 4):
                draw.line((x + max(0, k - side), y + min(k, side), x + min(k, side), y + max(0, k - side)),
                          fill=entry.colour)  # fmt: skip
        draw.text((x + side + 6, y + side / 2), entry.label, fill=TEXT_COLOUR, font=fnt, anchor="lm")
        x += side + 6 + int(fnt.getlength(entry.label)) + 22
    return side


def draw_overlay(
    image: Image.Image,
    mask: np.ndarray,
    objects: Sequence[ObjectPrompt] = (),
    caption: str | None = None,
) -> Image.Image:
    """The picture of a result: the image beside the same image with the mask, box and points drawn
    (:func:`draw_mask`), a legend, and ``caption`` (request, reasoning) wrapped underneath.

    Args:
        image: RGB image of size ``(W, H)``; enlarged or shrunk for display (:func:`display_size`).
        mask: bool ``(H, W)``.
        objects: boxes and points in the image's pixels.
        caption: text under the pictures; its line breaks are kept, and at most :data:`CAPTION_LINES`
            lines are drawn.
    """
    size = display_size(image.size)
    mask = np.asarray(mask, dtype=bool)
    plain = image.convert("RGB")
    plain = plain if size == plain.size else plain.resize(size, Image.Resampling.LANCZOS)
    colour = mask_colour(np.asarray(plain), resize_mask(mask, size))
    drawn = draw_mask(image, mask, objects, size=size, colour=colour)
    fnt = font()
    lh = line_height(fnt)
    width = max(2 * size[0] + 3 * PAD, MIN_WIDTH)
    text_width = width - 2 * PAD
    lines = shorten(wrap(caption, fnt, text_width), CAPTION_LINES, fnt, text_width) if caption else []
    panels_top = PAD + lh
    legend_top = panels_top + size[1] + PAD
    height = legend_top + lh + PAD + len(lines) * lh + (PAD if lines else 0)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    left = (width - (2 * size[0] + PAD)) // 2
    for n, (panel, title) in enumerate(((plain, "image"), (drawn, "mask, box and points"))):
        x = left + n * (size[0] + PAD)
        canvas.paste(panel, (x, panels_top))
        draw.text((x, PAD), title, fill=LABEL_COLOUR, font=fnt)
    draw_legend(draw, (left, legend_top), legend_entries(mask, objects, colour), fnt)
    y = legend_top + lh + PAD
    for line in lines:
        draw.text((PAD, y), line, fill=TEXT_COLOUR, font=fnt)
        y += lh
    return canvas
