"""Loading user images safely into RGB, with one clear sentence for every way it can go wrong."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segzero.defaults import MAX_IMAGE_PIXELS
from segzero.errors import InputError

ImageInput = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]

#: File name endings read as images when a whole folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, any case) directly inside ``folder``, sorted by name.

    Raises:
        InputError: ``folder`` is not a folder, or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Image folder not found: {folder}; check the path.")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"{folder} holds no image file ({', '.join(IMAGE_SUFFIXES)}).")
    return found


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float images: stretch their own range to 0..255 instead of clipping to white."""
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(arr.round().astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha composited on white, CMYK/palette converted, 16-bit rescaled."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(source: ImageInput, max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None) -> Image.Image:
    """Open an image from a path, bytes, a binary file object, a PIL image or an HxWx3 uint8 array, as RGB
    with EXIF orientation applied.

    Args:
        source: the image or where to read it; a file object (anything with ``read``, as PIL accepts)
            is read from its current position and left open.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).
        name: how to call the image in error messages (defaults to the path).

    Raises:
        InputError: missing file, not an image, truncated data, too many pixels, or a ``source`` of
            another type.
    """
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise InputError("An image array must be uint8 with shape HxW or HxWx3.")
        source = Image.fromarray(source)
    if isinstance(source, Image.Image):
        img, label = source, name or "the image"
        _check_pixels(img, max_pixels, label)
        return to_rgb(ImageOps.exif_transpose(img))

    owned = True  # a stream opened here is closed here; a caller's file object stays open
    if isinstance(source, (bytes, bytearray)):
        label, stream = name or "the uploaded image", io.BytesIO(source)
    elif hasattr(source, "read"):
        file_name = getattr(source, "name", None)
        label = name or (file_name if isinstance(file_name, str) else "the image file")
        stream, owned = source, False
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        try:
            if not path.exists():
                raise InputError(f"Image not found: {label}; check the path.")
            if path.is_dir():
                raise InputError(f"{label} is a folder, not an image file.")
            stream = path.open("rb")
        except OSError as exc:  # unreadable, name too long, ...
            reason = exc.strerror or exc
            raise InputError(f"{label} could not be opened ({reason}); check the path.") from None
    else:
        raise InputError(
            f"An image must be a path, bytes, a binary file object, a PIL image or an array, not "
            f"{type(source).__name__}."
        )
    try:
        with Image.open(stream) as img:
            _check_pixels(img, max_pixels, label)
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except InputError:  # the pixel cap: too large, not corrupt
        raise
    except UnidentifiedImageError:
        raise InputError(f"{label} is not an image file that can be read (PNG, JPEG, WebP, ...).") from None
    except Image.DecompressionBombError:
        raise InputError(f"{label} has too many pixels to be opened safely.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{label} could not be decoded; the file may be truncated or corrupt ({exc}).") from None
    finally:
        if owned:
            stream.close()


def _check_pixels(img: Image.Image, max_pixels: int, label: str) -> None:
    w, h = img.size
    if w * h > max_pixels:
        raise InputError(
            f"{label} is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; "
            "resize it or raise the pixel cap (--max-pixels)."
        )
    if w < 1 or h < 1:
        raise InputError(f"{label} has no pixels.")
