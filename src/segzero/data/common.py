"""Pieces every dataset reader shares: the skip report, image headers, ground-truth prompts on a Sample.

Readers never drop a record silently: each malformed record is passed to a :class:`SkipLog` with its id
and one sentence of reason, and the caller prints it. Repairs that keep the record (a bad polygon part
dropped from an otherwise good annotation) are recorded as warnings.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segzero.data.records import Sample
from segzero.geometry import SECOND_POINT_METHODS, component_prompts, mask_prompts
from segzero.protocols import PROTOCOLS, REFERENCE, SEGZERO

logger = logging.getLogger("segzero.data")

#: How ground-truth objects are read from a mask: the whole mask as one object (Seg-Zero's single-object
#: answer), or one object per connected component (the multi-object answer form).
OBJECT_MODES = ("single", "components")

#: EXIF tag holding the orientation; values 5..8 mean the stored pixels are transposed.
_EXIF_ORIENTATION = 0x0112


@dataclass
class SkipLog:
    """Counts of kept and skipped records, with every skipped id and why.

    Attributes:
        kept: samples that made it through (counted by :func:`segzero.data.iter_samples` and the CLI).
        skipped: ``(id, reason)`` per skipped record, in reading order.
        kinds: skipped records per short category (``"missing image"``, ``"empty mask"``, ...).
        warnings: ``(id, reason)`` for records kept after a repair (e.g. a bad polygon part dropped).
        echo: also log every skip and warning through :mod:`logging` (used when the caller passed none).
    """

    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    echo: bool = False

    def skip(self, record_id: str, reason: str, kind: str | None = None) -> None:
        """Record that ``record_id`` was skipped; ``kind`` groups reasons in the summary (default: reason)."""
        self.skipped.append((str(record_id), reason))
        self.kinds[kind or reason] += 1
        if self.echo:
            logger.warning("skipped %s: %s", record_id, reason)

    def warn(self, record_id: str, reason: str) -> None:
        """Record that ``record_id`` was kept after a repair."""
        self.warnings.append((str(record_id), reason))
        if self.echo:
            logger.warning("%s: %s", record_id, reason)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def write_jsonl(self, path: str | Path) -> None:
        """A JSON line per skipped record (``{"id", "reason"}``), then per warning (``"warning": true``)."""
        with Path(path).open("w", encoding="utf-8") as f:
            for record_id, reason in self.skipped:
                f.write(json.dumps({"id": record_id, "reason": reason}) + "\n")
            for record_id, reason in self.warnings:
                f.write(json.dumps({"id": record_id, "reason": reason, "warning": True}) + "\n")


def resolve_report(report: SkipLog | None) -> SkipLog:
    """The caller's report, or one that logs every skip so that nothing is dropped unseen."""
    return report if report is not None else SkipLog(echo=True)


def image_header(path: str | Path) -> tuple[int, int, int]:
    """``(width, height, exif_orientation)`` of an image file, reading only its header.

    ``width, height`` are the stored pixels; orientation is 1 when the file has none.

    Raises:
        OSError: the file is missing or is not an image PIL can read.
    """
    try:
        with Image.open(path) as img:
            orientation = 1
            try:
                orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            except Exception:  # a broken EXIF block does not make the pixels unreadable
                orientation = 1
            return img.size[0], img.size[1], orientation
    except UnidentifiedImageError as exc:
        raise OSError(f"not an image file: {exc}") from None


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """Size after applying the EXIF orientation (how :func:`segzero.images.load_image` shows it)."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def find_image(
    folder: Path, stem: str, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".JPG")
) -> Path | None:
    """The image ``folder/stem.<suffix>`` for the first suffix that exists, or None."""
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def check_options(second_point: str, objects: str, protocol: str = SEGZERO) -> None:
    """Raise ValueError for an unknown second-point method, object mode or protocol, or a combination the
    reference protocol does not have (it draws point 2 by its heuristic from one object per mask)."""
    if second_point not in SECOND_POINT_METHODS:
        raise ValueError(f"second_point must be one of {SECOND_POINT_METHODS}, got {second_point!r}")
    if objects not in OBJECT_MODES:
        raise ValueError(f"objects must be one of {OBJECT_MODES}, got {objects!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == REFERENCE and (second_point, objects) != ("reference", "single"):
        raise ValueError("the reference protocol needs second_point='reference' and objects='single'")


def add_mask_prompts(
    sample: Sample, second_point: str = "inscribed", objects: str = "single", protocol: str = SEGZERO
) -> bool:
    """Fill ``sample.boxes`` and ``sample.points`` (image pixels) from the target pixels of ``sample.mask``.

    ``objects="single"``: one object, its box and two points (see :func:`segzero.geometry.mask_prompts`;
    under ``protocol="reference"`` the points of :func:`segzero.geometry.reference_points`).
    ``objects="components"``: one object per 8-connected component, each with its box and one point, and
    ``extra["answer_form"] = "multi"``. Ignore pixels (255) are not target.

    Returns:
        False when the mask has no target pixel (nothing is changed), True otherwise.
    """
    if sample.mask is None:
        return False
    target = sample.mask == 1
    if objects == "components":
        parts = component_prompts(target)
        if not parts:
            return False
        sample.boxes = [box for box, _ in parts]
        sample.points = [(point,) for _, point in parts]
        sample.extra["answer_form"] = "multi"
        return True
    prompts = mask_prompts(target, second_point, exact_reference=protocol == REFERENCE)
    if prompts is None:
        return False
    box, points = prompts
    sample.boxes, sample.points = [box], [points]
    return True


#: Key under which an image opened from encoded bytes keeps those bytes (in ``PIL.Image.info``), with a
#: digest of its pixels, so that writing it again stores the original file instead of a re-encoding.
#: PIL copies ``info`` into derived images, hence the digest: changed pixels are never written as the
#: original bytes.
ENCODED_BYTES_KEY = "segzero.encoded"


def _pixel_digest(img: Image.Image) -> str:
    import hashlib

    return f"{img.mode}:{img.size}:{hashlib.blake2b(img.tobytes(), digest_size=16).hexdigest()}"


def open_image_bytes(data: bytes, name: str = "the image", file_name: str | None = None) -> Image.Image:
    """Decode image bytes to RGB with EXIF orientation applied (as :func:`segzero.images.load_image`).

    When the bytes need no rotation, they (and ``file_name``, the name they were stored under) are
    remembered in ``img.info[ENCODED_BYTES_KEY]`` for :func:`encode_image`.

    Raises:
        segzero.errors.InputError: the bytes are not a readable image.
    """
    from segzero.images import load_image

    img = load_image(data, name=name)
    with Image.open(io.BytesIO(data)) as raw:
        try:
            orientation = int(raw.getexif().get(_EXIF_ORIENTATION, 1) or 1)
        except Exception:
            orientation = 1
    if orientation == 1:
        img.info[ENCODED_BYTES_KEY] = (data, file_name, _pixel_digest(img))
    return img


def encode_image(image: str | Path | Image.Image) -> dict:
    """``{"bytes", "path"}`` for a ``datasets.Image`` column, in the frame masks and boxes are given in.

    A file is stored byte for byte unless its EXIF orientation would rotate it, in which case the
    rotated pixels are stored as PNG (every reader then sees the same frame). A PIL image opened by
    :func:`open_image_bytes` whose pixels are unchanged is stored as its original bytes; any other PIL
    image as PNG.

    Raises:
        segzero.errors.InputError: the file is missing or not an image.
    """
    from segzero.images import load_image, to_rgb

    if isinstance(image, Image.Image):
        stored = image.info.get(ENCODED_BYTES_KEY)
        if isinstance(stored, tuple) and len(stored) == 3 and stored[2] == _pixel_digest(image):
            return {"bytes": stored[0], "path": stored[1]}
        buf = io.BytesIO()
        to_rgb(image).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}
    path = Path(image)
    try:
        orientation = image_header(path)[2]
    except OSError:
        load_image(path)  # raises the clear error for a missing or unreadable file
        raise
    if orientation == 1:
        return {"bytes": path.read_bytes(), "path": path.name}
    buf = io.BytesIO()
    load_image(path).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": path.with_suffix(".png").name}
