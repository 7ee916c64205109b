"""gRefCOCO (GRES, Liu et al. CVPR 2023): referring expressions that match one, several or no objects.

Layout, as released (henghuiding/gRefCOCO) and as ReLA reads it::

    ROOT/                        # e.g. ReLA's datasets/, or the grefcoco folder itself
        grefcoco/                # (or these two files directly in ROOT)
            grefs(unc).json      # or the pickle grefs(unc).p
            instances.json       # COCO annotations of the referred objects
        images/train2014/        # COCO train2014: COCO_train2014_%012d.jpg

The images folder is found as for the ``refer`` files (:func:`segzero.data.refer.images_folder`), or given.
Each ref holds ``ref_id``, ``image_id``, ``split`` (train / val / testA / testB), ``ann_id`` (a list of
COCO annotation ids, or one id; ``[-1]`` for an expression that matches nothing, flagged
``no_target: true``), ``category_id``, ``sent_ids``, ``file_name`` and ``sentences`` (each ``sent``,
``raw``, ``tokens``, ``sent_id``).

One :class:`Sample` per sentence, in file order, id ``"<ref_id>_<sent_id>"``:

- target samples: ``mask`` the union of the referred annotations, one box and its points per annotation;
- target-free samples: ``boxes == []``, ``points == []``, an all-zero ``mask`` of the image's size and
  ``extra["no_target"] = True`` (False on target samples).

As in gRefCOCO's own loader, crowd annotations and annotations without a usable polygon are left out of
the ground truth (each one a warning in the report). Records that cannot be read are skipped with their
ids and why; fields this reader does not know are reported as warnings, the record kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral
from pathlib import Path

import numpy as np

from segzero.data.common import SkipLog, add_mask_prompts, check_options, resolve_report
from segzero.data.records import NO_TARGET_KEY, Sample
from segzero.data.refer import (
    CocoImages,
    RecordProblem,
    annotation_mask,
    images_folder,
    load_instances,
    load_refs,
    sentence_ids,
    sentence_text,
)
from segzero.errors import DatasetError
from segzero.protocols import SEGZERO

#: gRefCOCO's splits; the first release holds train and val (testA / testB were kept for a challenge).
GREFCOCO_SPLITS = ("train", "val", "testA", "testB")

#: ``ann_id`` of an expression that matches nothing.
NO_TARGET_ANN = -1

#: Fields of a gRefCOCO ref and of one of its sentences; others are reported as unknown.
REF_FIELDS = frozenset(
    {
        "ref_id",
        "image_id",
        "split",
        "ann_id",
        "category_id",
        "sentences",
        "sent_ids",
        "file_name",
        "no_target",
    }
)
SENTENCE_FIELDS = frozenset({"sent", "raw", "tokens", "sent_id"})
_REQUIRED = ("ref_id", "image_id", "split", "ann_id", "sentences")


def _locate(root: Path, split_by: str) -> tuple[Path, Path]:
    names = (f"grefs({split_by}).p", f"grefs({split_by}).json")  # the pickle first, as ReLA reads them
    for folder in (root, root / "grefcoco"):
        for name in names:
            if (folder / name).is_file() and (folder / "instances.json").is_file():
                return folder / name, folder / "instances.json"
    raise DatasetError(
        f"No {names[1]} (or {names[0]}) with instances.json found in {root} or {root / 'grefcoco'}; "
        "point --root at the gRefCOCO folder."
    )


def _ann_ids(ref: dict) -> list[int]:
    """The ref's annotation ids as a list (a lone id is one target), checked against ``no_target``.

    Raises:
        RecordProblem: ``ann_id`` is not ids, mixes -1 with annotations, or contradicts ``no_target``.
    """
    raw = ref["ann_id"]
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
        raise RecordProblem(f"ann_id {raw!r} is not a list of annotation ids", "bad ann_id")
    ids = [int(v) for v in values]
    empty = ids == [NO_TARGET_ANN]
    if not empty and NO_TARGET_ANN in ids:
        raise RecordProblem(
            f"ann_id {raw!r} mixes {NO_TARGET_ANN} (no target) with annotations", "bad ann_id"
        )
    if NO_TARGET_KEY in ref and bool(ref[NO_TARGET_KEY]) != empty:
        raise RecordProblem(
            f"no_target is {ref[NO_TARGET_KEY]!r} but ann_id is {raw!r}", "contradictory no_target"
        )
    return [] if empty else ids


def _unknown_fields(ref: dict) -> list[str]:
    unknown = sorted(set(ref) - REF_FIELDS)
    for sentence in ref.get("sentences") or []:
        if isinstance(sentence, dict):
            unknown += [f"sentences.{k}" for k in sorted(set(sentence) - SENTENCE_FIELDS)]
    return list(dict.fromkeys(unknown))


def _targets(
    ref: dict, ann_ids: list[int], anns: dict[int, dict], height: int, width: int
) -> tuple[list[tuple[int, np.ndarray]], list[str]]:
    """``[(ann_id, mask)]`` of the ref's usable annotations and a warning per one left out.

    Raises:
        RecordProblem: an annotation is unknown, belongs to another image, has a malformed
            segmentation, or none is usable.
    """
    objects, left_out = [], []
    for ann_id in ann_ids:
        ann = anns.get(ann_id)
        if ann is None:
            raise RecordProblem(f"annotation {ann_id} is not in instances.json", "unknown annotation")
        if int(ann.get("image_id", -1)) != int(ref["image_id"]):
            raise RecordProblem(
                f"annotation {ann_id} is on image {ann.get('image_id')}, the ref on image {ref['image_id']}",
                "unknown annotation",
            )
        if ann.get("iscrowd"):
            left_out.append(f"crowd annotation {ann_id} left out of the ground truth")
            continue
        try:
            mask, dropped = annotation_mask(ann.get("segmentation"), height, width)
        except (ValueError, TypeError) as exc:
            raise RecordProblem(f"annotation {ann_id}: {exc}", "bad segmentation") from None
        if not mask.any():
            why = "no polygon with 3 or more points" if dropped else "an empty mask"
            left_out.append(f"annotation {ann_id} has {why}; left out of the ground truth")
            continue
        if dropped:
            left_out.append(f"annotation {ann_id}: {dropped} polygon part(s) with < 3 points dropped")
        objects.append((ann_id, mask))
    if not objects:
        raise RecordProblem(
            f"none of the annotations {ann_ids} has a usable mask ({'; '.join(left_out)})", "empty mask"
        )
    return objects, left_out


def read_grefcoco(
    root: str | Path,
    split: str = "val",
    *,
    split_by: str | None = None,
    images: str | Path | None = None,
    report: SkipLog | None = None,
    second_point: str = "inscribed",
    objects: str = "single",
    protocol: str = SEGZERO,
) -> Iterator[Sample]:
    """Yield one Sample per sentence of ``split`` (see the module docstring for the layout and contract).

    Args:
        root: the folder holding ``grefs(unc).json`` (or ``.p``) and ``instances.json``, or its parent.
        split: ``train``, ``val``, ``testA`` or ``testB``.
        split_by: the refs file's scheme (gRefCOCO has only ``unc``, the default).
        images: the COCO train2014 folder (default: found near ``root``).
        report: receives every skipped record and every repair, with its id.
        second_point, objects, protocol: how each object's prompts are drawn from its annotation's mask
            (:func:`segzero.data.common.add_mask_prompts`).

    Yields:
        Samples with ``source="grefcoco"``, ``mask`` uint8 0/1 of the image's size, ``extra`` with
        ``split, split_by, ref_id, ann_ids, image_id, sent_id, category_ids, no_target``.

    Raises:
        DatasetError: the refs or instances file is missing or unreadable, or ``split`` is not in it.
    """
    check_options(second_point, objects, protocol)
    report = resolve_report(report)
    root = Path(root)
    split_by = split_by or "unc"
    refs_path, instances_path = _locate(root, split_by)
    refs = load_refs(refs_path)
    splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict) and "split" in r})
    if split not in splits:
        raise DatasetError(f"{refs_path} has no split {split!r}; its splits are {', '.join(splits)}.")
    coco_images, anns = load_instances(instances_path)
    coco = CocoImages(images_folder(root, refs_path.parent, images))

    for position, ref in enumerate(refs):
        if not isinstance(ref, dict):
            report.skip(
                f"ref #{position}", f"ref #{position} of {refs_path.name} is not a record", "bad record"
            )
            continue
        if ref.get("split", split) != split:
            continue
        ref_id = ref.get("ref_id", f"#{position}")
        sentences = ref.get("sentences")
        ids = sentence_ids(ref_id, sentences) if isinstance(sentences, list) else []
        missing = [k for k in _REQUIRED if k not in ref]
        if missing or not ids:
            why = f"lacks {', '.join(missing)}" if missing else "has no sentences"
            report.skip(str(ref_id), f"ref {ref_id} {why}", "missing fields" if missing else "no sentences")
            continue
        try:
            ann_ids = _ann_ids(ref)
            image_info = coco_images.get(int(ref["image_id"]))
            if image_info is None:
                raise RecordProblem(f"image {ref['image_id']} is not in instances.json", "unknown image")
            height, width = int(image_info["height"]), int(image_info["width"])
            image, orientation = coco.open(image_info)
            targets, repairs = _targets(ref, ann_ids, anns, height, width) if ann_ids else ([], [])
        except RecordProblem as problem:
            for sample_id in ids:
                report.skip(sample_id, problem.reason, problem.kind)
            continue
        except (TypeError, ValueError) as exc:
            for sample_id in ids:
                report.skip(sample_id, f"ref {ref_id} is malformed ({exc})", "bad record")
            continue

        unknown = _unknown_fields(ref)
        if unknown:
            repairs = [*repairs, f"unknown field(s) {', '.join(unknown)} not read"]
        if orientation != 1:
            repairs = [*repairs, f"EXIF orientation {orientation} of {image_info['file_name']} ignored"]
        mask = np.zeros((height, width), dtype=np.uint8)
        prompts = Sample(id="", image=image, request="", width=width, height=height)
        for _, target in targets:
            mask |= target
            part = Sample(id="", image=image, request="", width=width, height=height, mask=target)
            add_mask_prompts(part, second_point, objects, protocol)
            prompts.boxes += part.boxes
            prompts.points += part.points
            prompts.extra.update(part.extra)
        categories = ref.get("category_id")
        for sentence, sample_id in zip(sentences, ids):
            for repair in repairs:
                report.warn(sample_id, repair)
            text = sentence_text(sentence)
            if not text:
                report.skip(sample_id, "the sentence is empty", "empty request")
                continue
            yield Sample(
                id=sample_id,
                image=image,
                request=text,
                width=width,
                height=height,
                mask=mask.copy(),
                boxes=list(prompts.boxes),
                points=list(prompts.points),
                source="grefcoco",
                extra={
                    "split": split,
                    "split_by": split_by,
                    "ref_id": ref_id,
                    "ann_ids": ann_ids,
                    "image_id": int(image_info["id"]),
                    "sent_id": sentence.get("sent_id") if isinstance(sentence, dict) else None,
                    "category_ids": categories if isinstance(categories, list) else [categories],
                    NO_TARGET_KEY: not ann_ids,
                    **prompts.extra,
                },
            )


__all__ = ["GREFCOCO_SPLITS", "NO_TARGET_KEY", "read_grefcoco"]
