"""RefCOCO, RefCOCO+ and RefCOCOg from the ``refer`` release files.

Layout (the ``refer`` toolkit's ``data/`` folder, or any folder holding the same files)::

    ROOT/                     # e.g. refer/data/refcocog, or refer/data with a refcocog/ subfolder
        refs(umd).p           # refcocog umd splits; refs(google).p for google; refs(unc).p for refcoco(+)
        instances.json        # COCO annotations of the referred objects
    IMAGES/                   # COCO train2014 images, found by their instances.json file_name

The images folder is ``images=`` if given, else the first of ``ROOT/images``, ``ROOT/train2014``,
``ROOT/images/mscoco/images/train2014`` and ``ROOT/../images/mscoco/images/train2014`` that exists.

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
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


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


def _load_refs(path: Path) -> list[dict]:
    try:
        with path.open("rb") as f:
            try:
                refs = pickle.load(f)
            except UnicodeDecodeError:  # pickles written by Python 2
                f.seek(0)
                refs = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetError(
            f"{path} could not be read as a refs pickle ({exc}); re-download the refer files."
        ) from None
    if not isinstance(refs, list):
        raise DatasetError(
            f"{path} should hold a list of referring expressions; re-download the refer files."
        )
    return refs


def _load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
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


def _images_folder(root: Path, data_dir: Path, images: str | Path | None) -> Path:
    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise DatasetError(f"Images folder {folder} does not exist; pass the COCO train2014 folder.")
        return folder
    coco = Path("images") / "mscoco" / "images" / "train2014"
    for folder in (
        root / "images",
        root / "train2014",
        root / coco,
        data_dir / "images",
        data_dir.parent / coco,
    ):
        if folder.is_dir():
            return folder
    raise DatasetError(f"No COCO images folder found next to {data_dir}; pass it with --images.")


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
    refs = _load_refs(refs_path)
    splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
    if split not in splits:
        raise DatasetError(f"{refs_path} has no split {split!r}; its splits are {', '.join(splits)}.")
    coco_images, anns = _load_instances(instances_path)
    image_dir = _images_folder(root, refs_path.parent, images)

    header_cache: dict[int, tuple[int, int, int] | str] = {}
    for ref in refs:
        if not isinstance(ref, dict) or ref.get("split") != split:
            continue
        ref_id = ref.get("ref_id")
        sentences = ref.get("sentences") or []
        ids = [
            f"{ref_id}_{s.get('sent_id', i) if isinstance(s, dict) else i}" for i, s in enumerate(sentences)
        ]
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
        image_path = image_dir / image_info["file_name"]
        image_id = int(image_info["id"])
        if image_id not in header_cache:
            try:
                header_cache[image_id] = image_header(image_path)
            except OSError:
                header_cache[image_id] = "missing" if not image_path.exists() else "unreadable"
        header = header_cache[image_id]
        if header == "missing":
            skip_all(f"image file {image_path} is missing", "missing image")
            continue
        if header == "unreadable":
            skip_all(f"image file {image_path} cannot be read", "unreadable image")
            continue
        assert isinstance(header, tuple)
        if header[:2] != (width, height):
            skip_all(
                f"image {image_path.name} is {header[0]}x{header[1]}, instances.json says {width}x{height}",
                "image size mismatch",
            )
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
        image: str | Path | Image.Image = image_path
        if header[2] != 1:
            # COCO annotated the stored pixels; hand those on, not the EXIF-rotated view.
            with Image.open(image_path) as raw:
                image = raw.convert("RGB")
            for sample_id in ids:
                report.warn(sample_id, f"EXIF orientation {header[2]} of {image_path.name} ignored")
        prompts = Sample(id="", image=image, request="", width=width, height=height, mask=mask)
        add_mask_prompts(prompts, second_point, objects, protocol)
        for sentence, sample_id in zip(sentences, ids):
            if dropped:
                report.warn(
                    sample_id, f"annotation {ann['id']}: {dropped} polygon part(s) with < 3 points dropped"
                )
            text = (sentence.get("sent") or sentence.get("raw") or "") if isinstance(sentence, dict) else ""
            if not str(text).strip():
                report.skip(sample_id, "the sentence is empty", "empty request")
                continue
            sample = Sample(
                id=sample_id,
                image=image,
                request=str(text).strip(),
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
