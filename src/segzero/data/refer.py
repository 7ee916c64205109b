"""RefCOCO, RefCOCO+ and RefCOCOg from the ``refer`` release files.

Layout (the ``refer`` toolkit's ``data/`` folder, or any folder holding the same files)::

    ROOT/                     # e.g. refer/data/refcocog, or refer/data with a refcocog/ subfolder
        refs(umd).p           # refcocog umd splits; refs(google).p for google; refs(unc).p for refcoco(+)
        instances.json        # COCO annotations of the referred objects
    IMAGES/                   # COCO train2014 images, found by their instances.json file_name

The images folder is ``images=`` if given, else the first that exists of :data:`IMAGE_FOLDERS`
(``ROOT/images/train2014``, ``ROOT/images/mscoco/images/train2014``, ``ROOT/images``, ``ROOT/train2014``,
then the same in the folder holding the refs file and in its parent).

One :class:`Sample` per referring expression (sentence) of the requested split, in file order, with the
mask of the referred annotation (polygons or RLE, crowd annotations included) and its ground-truth
prompts. The ``refs`` file is a pickle: loading it can run code, so use only files you trust.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segzero.data.common import SkipLog, add_mask_prompts, check_options, image_header, resolve_report
from segzero.data.records import Sample
from segzero.errors import DatasetError
from segzero.protocols import SEGZERO

#: Default split scheme (the ``refs(...).p`` file) per dataset.
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "grefcoco": "unc"}

#: Where the COCO images are looked for, relative to the ``--root`` given and to the folder holding the
#: refs file, in this order (the refer toolkit's ``images/mscoco/images/train2014``, ReLA's ``images/train2014``).
IMAGE_FOLDERS = (
    Path("images") / "train2014",
    Path("images") / "mscoco" / "images" / "train2014",
    Path("images"),
    Path("train2014"),
)


def polygon_ok(poly: Any) -> bool:
    """A COCO polygon part is a flat list of at least 3 finite ``x, y`` pairs."""
    if not isinstance(poly, (list, tuple)) or len(poly) < 6 or len(poly) % 2:
        return False
    try:
        return bool(np.all(np.isfinite(np.asarray(poly, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def annotation_mask(segmentation: Any, height: int, width: int) -> tuple[np.ndarray, int]:
    """Decode a COCO ``segmentation`` into a uint8 0/1 ``(height, width)`` mask.

    Polygons and uncompressed RLE go through ``frPyObjects`` (like pycocotools' ``annToMask``);
    compressed RLE is decoded as is. Polygon parts with fewer than 3 points are dropped, because
    pycocotools would misread a 2-point part as a box.

    Returns:
        ``(mask, dropped)``: the mask and how many polygon parts were dropped.

    Raises:
        ValueError: the segmentation is neither polygons nor RLE, or its RLE size is not the image's.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polys = [list(map(float, p)) for p in segmentation if polygon_ok(p)]
        dropped = len(segmentation) - len(polys)
        if not polys:
            return np.zeros((height, width), dtype=np.uint8), dropped
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"its RLE size {list(segmentation['size'])} is not the image's {[height, width]}"
            )
        dropped = 0
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError("its segmentation is neither polygons nor RLE")
    mask = mask_utils.decode(rle)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask > 0).astype(np.uint8), dropped


def load_refs(path: Path) -> list[dict]:
    """The referring expressions of a refs file: a pickle (``refs(umd).p``, Python 2 ones too) or, for a
    ``.json`` file, JSON. Loading a pickle can run code: use only files you trust.

    Raises:
        DatasetError: the file cannot be read or does not hold a list.
    """
    try:
        if path.suffix == ".json":
            refs = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as f:
                try:
                    refs = pickle.load(f)
                except UnicodeDecodeError:  # pickles written by Python 2
                    f.seek(0)
                    refs = pickle.load(f, encoding="latin1")
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetError(f"{path} could not be read as a refs file ({exc}); re-download it.") from None
    if not isinstance(refs, list):
        raise DatasetError(f"{path} should hold a list of referring expressions; re-download it.")
    return refs


def load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """``(images, annotations)`` of a COCO instances file, each by id.

    Raises:
        DatasetError: the file is missing, not JSON, or lacks ``images`` / ``annotations``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(im["id"]): im for im in data["images"]}
        anns = {int(a["id"]): a for a in data["annotations"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{path} is not a COCO instances file with images and annotations ({exc})."
        ) from None
    return images, anns


def _locate(root: Path, dataset: str, split_by: str) -> tuple[Path, Path]:
    refs_name = f"refs({split_by}).p"
    for folder in (root, root / dataset):
        if (folder / refs_name).is_file() and (folder / "instances.json").is_file():
            return folder / refs_name, folder / "instances.json"
    raise DatasetError(
        f"No {refs_name} with instances.json found in {root} or {root / dataset}; "
        "point --root at the refer data folder of this dataset."
    )


def images_folder(root: Path, data_dir: Path, images: str | Path | None) -> Path:
    """The COCO images folder: ``images`` if given, else the first of :data:`IMAGE_FOLDERS` under
    ``root``, then under ``data_dir`` (the folder holding the refs file) and its parent.

    Raises:
        DatasetError: ``images`` is not a folder, or none was found.
    """
    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise DatasetError(f"Images folder {folder} does not exist; pass the COCO train2014 folder.")
        return folder
    for base in dict.fromkeys((root, data_dir, data_dir.parent)):
        for relative in IMAGE_FOLDERS:
            if (base / relative).is_dir():
                return base / relative
    raise DatasetError(f"No COCO images folder found next to {data_dir}; pass it with --images.")


class RecordProblem(Exception):
    """A record that cannot be used: ``reason`` (one sentence) and ``kind`` (the skip report's category)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


class CocoImages:
    """The COCO images of a refer-style release, each file's header read once.

    :meth:`open` checks an ``instances.json`` image record against its file and hands back what a
    Sample's ``image`` should be.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._headers: dict[int, tuple[int, int, int] | str] = {}

    def open(self, info: dict) -> tuple[Path | Image.Image, int]:
        """``(image, exif_orientation)`` for an image record (``id, file_name, width, height``).

        ``image`` is the file's path, or for a file whose EXIF orientation would rotate it away from
        COCO's raw-pixel annotations (``exif_orientation != 1``), its raw pixels as RGB.

        Raises:
            RecordProblem: the file is missing or unreadable, or its size is not the record's.
        """
        path = self.folder / info["file_name"]
        image_id = int(info["id"])
        if image_id not in self._headers:
            try:
                self._headers[image_id] = image_header(path)
            except OSError:
                self._headers[image_id] = "missing" if not path.exists() else "unreadable"
        header = self._headers[image_id]
        if header == "missing":
            raise RecordProblem(f"image file {path} is missing", "missing image")
        if header == "unreadable":
            raise RecordProblem(f"image file {path} cannot be read", "unreadable image")
        assert isinstance(header, tuple)
        width, height = int(info["width"]), int(info["height"])
        if header[:2] != (width, height):
            raise RecordProblem(
                f"image {path.name} is {header[0]}x{header[1]}, instances.json says {width}x{height}",
                "image size mismatch",
            )
        if header[2] != 1:
            # COCO annotated the stored pixels; hand those on, not the EXIF-rotated view.
            with Image.open(path) as raw:
                return raw.convert("RGB"), header[2]
        return path, 1


def sentence_ids(ref_id: Any, sentences: list) -> list[str]:
    """The sample id of each sentence of a ref: ``"<ref_id>_<sent_id>"`` (the sentence's position when it
    has no ``sent_id``)."""
    return [f"{ref_id}_{s.get('sent_id', i) if isinstance(s, dict) else i}" for i, s in enumerate(sentences)]


def sentence_text(sentence: Any) -> str:
    """A sentence's request: its ``sent`` (the refer toolkit's cleaned text), else its ``raw``; ``""`` if none."""
    text = (sentence.get("sent") or sentence.get("raw") or "") if isinstance(sentence, dict) else ""
    return str(text).strip()


def read_refer(
    root: str | Path,
    dataset: str = "refcocog",
    split: str = "val",
    *,
    split_by: str | None = None,
    images: str | Path | None = None,
    report: SkipLog | None = None,
    second_point: str = "inscribed",
    objects: str = "single",
    protocol: str = SEGZERO,
) -> Iterator[Sample]:
    """Yield one Sample per referring expression of ``split``.

    Args:
        root: folder holding ``refs(<split_by>).p`` and ``instances.json`` (or their parent).
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``; names the source and the default ``split_by``.
        split: e.g. ``train``, ``val``, ``test``, ``testA``, ``testB``.
        split_by: ``unc``, ``umd`` or ``google`` (default: ``umd`` for refcocog, ``unc`` otherwise).
        images: the COCO images folder (see the module docstring for where it is looked for otherwise).
        report: receives skipped records (missing image, image size not the annotation's, no usable
            segmentation, empty mask) and repairs (bad polygon parts dropped).
        second_point, objects, protocol: how ground-truth prompts are drawn from the mask (see
            :func:`segzero.data.common.add_mask_prompts`).

    Yields:
        Samples with ``id = "<ref_id>_<sent_id>"``, ``image`` the file path (or, for a file whose EXIF
        orientation would rotate it away from COCO's raw-pixel annotations, the raw pixels), ``mask``
        uint8 0/1, ``extra`` with ``split, ref_id, ann_id, image_id, sent_id, category_id``.

    Raises:
        DatasetError: the refs or instances file is missing or unreadable, or ``split`` is not in it.
    """
    check_options(second_point, objects, protocol)
    report = resolve_report(report)
    root = Path(root)
    split_by = split_by or DEFAULT_SPLIT_BY.get(dataset, "unc")
    refs_path, instances_path = _locate(root, dataset, split_by)
    refs = load_refs(refs_path)
    splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
    if split not in splits:
        raise DatasetError(f"{refs_path} has no split {split!r}; its splits are {', '.join(splits)}.")
    coco_images, anns = load_instances(instances_path)
    coco = CocoImages(images_folder(root, refs_path.parent, images))
    for ref in refs:
        if not isinstance(ref, dict) or ref.get("split") != split:
            continue
        ref_id = ref.get("ref_id")
        sentences = ref.get("sentences") or []
        ids = sentence_ids(ref_id, sentences)
        if not ids:
            report.skip(str(ref_id), "the referring expression has no sentences", "no sentences")
            continue

        def skip_all(reason: str, kind: str, ids: list[str] = ids) -> None:
            for sample_id in ids:
                report.skip(sample_id, reason, kind)

        ann = anns.get(int(ref.get("ann_id", -1)))
        image_info = coco_images.get(int(ref.get("image_id", -1)))
        if ann is None or image_info is None:
            skip_all(
                f"annotation {ref.get('ann_id')} or image {ref.get('image_id')} is not in instances.json",
                "unknown annotation",
            )
            continue
        height, width = int(image_info["height"]), int(image_info["width"])
        image_id = int(image_info["id"])
        try:
            image, orientation = coco.open(image_info)
        except RecordProblem as problem:
            skip_all(problem.reason, problem.kind)
            continue
        try:
            mask, dropped = annotation_mask(ann.get("segmentation"), height, width)
        except (ValueError, TypeError) as exc:
            skip_all(f"annotation {ann['id']}: {exc}", "bad segmentation")
            continue
        if not mask.any():
            why = "has no polygon with 3 or more points" if dropped else "has an empty mask"
            skip_all(f"annotation {ann['id']} {why}", "empty mask")
            continue
        if orientation != 1:
            for sample_id in ids:
                report.warn(sample_id, f"EXIF orientation {orientation} of {image_info['file_name']} ignored")
        prompts = Sample(id="", image=image, request="", width=width, height=height, mask=mask)
        add_mask_prompts(prompts, second_point, objects, protocol)
        for sentence, sample_id in zip(sentences, ids):
            if dropped:
                report.warn(
                    sample_id, f"annotation {ann['id']}: {dropped} polygon part(s) with < 3 points dropped"
                )
            text = sentence_text(sentence)
            if not text:
                report.skip(sample_id, "the sentence is empty", "empty request")
                continue
            sample = Sample(
                id=sample_id,
                image=image,
                request=text,
                width=width,
                height=height,
                mask=mask.copy(),
                source=dataset,
                extra={
                    "split": split,
                    "split_by": split_by,
                    "ref_id": ref_id,
                    "ann_id": int(ann["id"]),
                    "image_id": image_id,
                    "sent_id": sentence.get("sent_id") if isinstance(sentence, dict) else None,
                    "category_id": ref.get("category_id", ann.get("category_id")),
                    "iscrowd": int(ann.get("iscrowd", 0) or 0),
                    **prompts.extra,
                },
                boxes=list(prompts.boxes),
                points=list(prompts.points),
            )
            yield sample
