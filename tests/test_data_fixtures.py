"""Builders of tiny datasets in every source format, shared by the tests/test_data_*.py modules.

Every mask is made of rectangles with known pixel extents, so the tests can state exact values.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def rect(shape: tuple[int, int], x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Boolean mask of ``shape`` (h, w) with the inclusive rectangle set."""
    m = np.zeros(shape, dtype=bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def random_rect_masks(seed: int, count: int, min_extent: int = 0) -> list[np.ndarray]:
    """``count`` 18 x 22 masks, each the union of 1 to 3 random rectangles reaching ``min_extent`` to 7
    pixels past their top-left corner."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(count):
        mask = np.zeros((18, 22), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            x1, y1 = rng.integers(0, 18), rng.integers(0, 14)
            dx, dy = rng.integers(min_extent, 8), rng.integers(min_extent, 8)
            mask |= rect(mask.shape, x1, y1, x1 + dx, y1 + dy)
        masks.append(mask)
    return masks


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major run lengths, starting with zeros), written by hand."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def save_image(path: Path, size: tuple[int, int], color=(120, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


# --- refer (RefCOCOg umd) -------------------------------------------------------------------------------

REFER_SHAPE = (30, 40)  # (h, w) of image 1
L_SHAPE = rect(REFER_SHAPE, 28, 2, 31, 21) | rect(REFER_SHAPE, 28, 18, 39, 21)
CROWD = rect(REFER_SHAPE, 30, 20, 37, 24)


def make_refer(tmp: Path) -> Path:
    """A refcocog folder: refs(umd).p + instances.json + images/ (image 2 is missing on purpose).

    val refs: 1 (polygon rectangle, 2 sentences), 2 (compressed RLE L-shape), 3 (iscrowd, uncompressed
    RLE), 4 (only a 2-point polygon: skipped), 5 (a good and a 2-point part: kept with a warning),
    6 (image file missing: skipped). train: ref 7.
    """
    from pycocotools import mask as mask_utils

    root = tmp / "refcocog"
    root.mkdir(parents=True)
    save_image(tmp / "refcocog" / "images" / "COCO_train2014_000000000001.jpg", (40, 30))
    compressed = mask_utils.encode(np.asfortranarray(L_SHAPE.astype(np.uint8)))
    compressed = {"size": [30, 40], "counts": compressed["counts"].decode("ascii")}
    anns = [
        (101, 1, [[5, 5, 25, 5, 25, 15, 5, 15]], 0),
        (102, 1, compressed, 0),
        (103, 1, uncompressed_rle(CROWD), 1),
        (104, 1, [[1, 1, 3, 3]], 0),
        (105, 1, [[5, 20, 15, 20, 15, 28, 5, 28], [30, 2, 35, 2]], 0),
        (106, 2, [[1, 1, 10, 1, 10, 10, 1, 10]], 0),
    ]
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 30, "width": 40},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 30, "width": 40},
        ],
        "annotations": [
            {
                "id": a,
                "image_id": i,
                "segmentation": seg,
                "iscrowd": crowd,
                "category_id": 7,
                "area": 1,
                "bbox": [0, 0, 1, 1],
            }
            for a, i, seg, crowd in anns
        ],
        "categories": [{"id": 7, "name": "thing"}],
    }
    (root / "instances.json").write_text(json.dumps(instances))

    def ref(ref_id, ann_id, image_id, split, sents):
        return {
            "ref_id": ref_id,
            "ann_id": ann_id,
            "image_id": image_id,
            "split": split,
            "category_id": 7,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sentences": [
                {"sent": s, "raw": s.capitalize() + ".", "sent_id": sid, "tokens": s.split()}
                for sid, s in sents
            ],
        }

    refs = [
        ref(1, 101, 1, "val", [(10, "the box on the left"), (11, "left rectangle")]),
        ref(2, 102, 1, "val", [(12, "the l shape")]),
        ref(3, 103, 1, "val", [(13, "the crowd")]),
        ref(4, 104, 1, "val", [(14, "a broken polygon")]),
        ref(5, 105, 1, "val", [(15, "the lower box")]),
        ref(6, 106, 2, "val", [(16, "a thing in a missing image")]),
        ref(7, 101, 1, "train", [(17, "training sentence")]),
    ]
    with (root / "refs(umd).p").open("wb") as f:
        pickle.dump(refs, f)
    return root


# --- gRefCOCO (ReLA's datasets/ layout) -----------------------------------------------------------------

GREF_SIZES = {1: (40, 30), 2: (32, 24), 3: (20, 20)}  # image id -> (w, h); image 3's file is missing
GREF_RECTS = {  # annotation id -> (image id, inclusive x1, y1, x2, y2, iscrowd)
    101: (1, 4, 3, 13, 12, 0),
    102: (1, 20, 10, 35, 25, 0),
    103: (1, 0, 20, 9, 29, 1),
    201: (2, 2, 2, 17, 9, 0),
    301: (3, 1, 1, 5, 5, 0),
}


def grefcoco_target(*ann_ids: int) -> np.ndarray:
    """The expected uint8 mask of a ref: the union of its annotations' rectangles (crowd ones left out)."""
    image_id = GREF_RECTS[ann_ids[0]][0]
    w, h = GREF_SIZES[image_id]
    mask = np.zeros((h, w), dtype=bool)
    for ann_id in ann_ids:
        _, x1, y1, x2, y2, crowd = GREF_RECTS[ann_id]
        if not crowd:
            mask |= rect((h, w), x1, y1, x2, y2)
    return mask.astype(np.uint8)


def make_grefcoco(tmp: Path, refs_format: str = "json", image_maker=None) -> Path:
    """ReLA's ``datasets/`` folder: ``grefcoco/grefs(unc).json`` (or ``.p`` with ``refs_format="pickle"``),
    ``grefcoco/instances.json`` and ``images/train2014/COCO_train2014_%012d.jpg`` (image 3 missing).

    val refs (sentences): 1 one target (2), 2 two targets (1), 3 no target (1), 4 a target and a crowd
    annotation (1), 5 ``[-1]`` with ``no_target: false`` (skipped), 6 an unknown annotation (skipped),
    7 a missing image (skipped), 8 a lone ``ann_id`` and an unknown field (kept, warned), 9 no
    ``sentences`` (skipped). train: ref 10; testA: ref 11 (no target), ref 12 (one target); testB: ref 13.
    ``image_maker(w, h, image_id)`` draws the images (default: a plain colour).
    """
    from pycocotools import mask as mask_utils

    data = tmp / "grefcoco"
    data.mkdir(parents=True)
    for image_id, size in GREF_SIZES.items():
        if image_id != 3:
            path = tmp / "images" / "train2014" / f"COCO_train2014_{image_id:012d}.jpg"
            if image_maker is None:
                save_image(path, size, (40 * image_id, 90, 160))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                image_maker(*size, image_id).save(path)
    anns = []
    for ann_id, (image_id, x1, y1, x2, y2, crowd) in GREF_RECTS.items():
        w, h = GREF_SIZES[image_id]
        plane = rect((h, w), x1, y1, x2, y2)
        if ann_id == 101:  # a polygon, as most COCO annotations are (pycocotools fills it to these pixels)
            seg = [[x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]]
        elif crowd:
            seg = uncompressed_rle(plane)
        else:
            rle = mask_utils.encode(np.asfortranarray(plane.astype(np.uint8)))
            seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd,
                     "segmentation": seg, "area": int(plane.sum()), "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1]})  # fmt: skip
    images = [
        {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": w, "height": h}
        for i, (w, h) in GREF_SIZES.items()
    ]
    categories = [{"id": 1, "name": "thing", "supercategory": "thing"}]
    (data / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": categories})
    )

    def ref(ref_id, image_id, split, ann_id, sents, **fields):
        ids = ann_id if isinstance(ann_id, list) else [ann_id]
        record = {
            "ref_id": ref_id,
            "image_id": image_id,
            "split": split,
            "ann_id": ann_id,
            "category_id": [-1 if a == -1 else 1 for a in ids] if isinstance(ann_id, list) else 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
            "sent_ids": [sid for sid, _ in sents],
            "sentences": [
                {"tokens": text.split(), "raw": text.capitalize(), "sent_id": sid, "sent": text}
                for sid, text in sents
            ],
            "no_target": ids == [-1],
        }
        record.update(fields)
        return record

    refs = [
        ref(1, 1, "val", [101], [(10, "the small box"), (11, "top left thing")]),
        ref(2, 1, "val", [101, 102], [(20, "both boxes")]),
        ref(3, 1, "val", [-1], [(30, "the dog")]),
        ref(4, 1, "val", [102, 103], [(40, "the box and the crowd")]),
        ref(5, 1, "val", [-1], [(50, "a contradiction")], no_target=False),
        ref(6, 1, "val", [999], [(60, "an unknown annotation")]),
        ref(7, 3, "val", [301], [(70, "in a missing image")]),
        ref(8, 2, "val", 201, [(80, "the wide box")], foo="bar"),
        {"ref_id": 9, "image_id": 2, "split": "val", "ann_id": [201]},
        ref(10, 2, "train", [201], [(100, "a training sentence")]),
        ref(11, 2, "testA", [-1], [(110, "the cat")]),
        ref(12, 1, "testA", [102], [(120, "the right box")]),
        ref(13, 2, "testB", [201], [(130, "the box")]),
    ]
    if refs_format == "json":
        (data / "grefs(unc).json").write_text(json.dumps(refs))
    else:
        with (data / "grefs(unc).p").open("wb") as f:
            pickle.dump(refs, f)
    return tmp


# --- ReasonSeg -------------------------------------------------------------------------------------------

REASONSEG_SHAPE = (40, 60)


def reasonseg_expected_a() -> np.ndarray:
    """Mask of val/a: big target, ignore square inside it, small target inside the ignore square."""
    m = np.zeros(REASONSEG_SHAPE, dtype=np.uint8)
    m[5:31, 5:51] = 1
    m[10:21, 10:21] = 255
    m[12:16, 12:16] = 1
    return m


def _poly(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def make_reasonseg(tmp: Path) -> Path:
    """A ReasonSeg folder with val/ (a, b kept; c, d, e, f skipped) and train/ (g, two texts)."""
    root = tmp / "ReasonSeg"
    val, train = root / "val", root / "train"

    def write(folder: Path, stem: str, record, image: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        if image:
            save_image(folder / f"{stem}.jpg", (60, 40))
        if record is not None:
            text = record if isinstance(record, str) else json.dumps(record)
            (folder / f"{stem}.json").write_text(text)

    # Shapes listed smallest first: the mask is right only if they are drawn in decreasing area order.
    write(
        val,
        "a",
        {
            "text": ["the thing to sit on", "another phrasing"],
            "is_sentence": False,
            "shapes": [
                {"label": "target", "points": _poly(12, 12, 15, 15), "shape_type": "polygon"},
                {"label": "flag", "points": _poly(0, 0, 59, 39), "shape_type": "polygon"},
                {"label": "ignore", "points": _poly(10, 10, 20, 20), "shape_type": "polygon"},
                {"label": "target", "points": _poly(5, 5, 50, 30), "shape_type": "polygon"},
            ],
        },
    )
    write(
        val,
        "b",
        {
            "text": ["what in this picture would a person use to keep warm in winter?"],
            "is_sentence": True,
            "shapes": [
                {"label": "target", "points": _poly(0, 0, 9, 9), "shape_type": "polygon"},
                {"label": "target", "points": [[1, 1], [2, 2]], "shape_type": "polygon"},
            ],
        },
    )
    write(
        val,
        "c",
        {
            "text": ["no image"],
            "is_sentence": False,
            "shapes": [{"label": "target", "points": _poly(1, 1, 5, 5)}],
        },
        image=False,
    )
    write(val, "d", "{not json")
    write(
        val,
        "e",
        {
            "text": ["bad polygon only"],
            "is_sentence": False,
            "shapes": [{"label": "target", "points": [[1, 1], [5, 5]]}],
        },
    )
    write(val, "f", None)
    write(
        train,
        "g",
        {
            "text": ["first text", "second text"],
            "is_sentence": False,
            "shapes": [{"label": "target", "points": _poly(20, 10, 39, 19)}],
        },
    )
    return root


# --- reference release (Hugging Face) --------------------------------------------------------------------


def make_reference_hf(tmp: Path) -> tuple[Path, Path, Path]:
    """Three datasets saved with save_to_disk: single form, multi form, and an eval-style set with masks."""
    import datasets

    image = Image.new("RGB", (100, 50), (10, 200, 30))
    single = datasets.Dataset.from_dict(
        {
            "problem": ["the box", "broken", ""],
            "solution": [
                "<box>(84,84),(244,235)</box><points>(160,151),(210,200)</points>",
                "<box>nonsense</box>",
                "<box>(1,1),(2,2)</box><points>(1,1),(2,2)</points>",
            ],
            "image": [image, image, image],
            "img_height": [50, 50, 50],
            "img_width": [100, 100, 100],
        }
    ).cast_column("image", datasets.Image())
    multi = datasets.Dataset.from_dict(
        {
            "problem": ["both boxes", "just one"],
            "solution": [
                json.dumps(
                    [
                        {"bbox_2d": [84, 84, 244, 235], "point_2d": [160, 151]},
                        {"bbox_2d": [420, 420, 840, 840], "point_2d": [600, 600]},
                    ]
                ),
                json.dumps([{"bbox_2d": [0, 0, 84, 168], "point_2d": [42, 84]}]),
            ],
            "image": [image, image],
            "img_height": [50, 50],
            "img_width": [100, 100],
        }
    ).cast_column("image", datasets.Image())
    mask = rect((50, 100), 10, 5, 29, 14).astype(np.uint8) * 255
    evalset = datasets.Dataset.from_dict(
        {
            "text": ["eval request"],
            "image": [image],
            "mask": [mask.tolist()],
            "image_id": ["img7"],
            "ann_id": ["3"],
            "img_height": [50],
            "img_width": [100],
        }
    ).cast_column("image", datasets.Image())
    paths = tmp / "ref_single", tmp / "ref_multi", tmp / "ref_eval"
    for ds, path in zip((single, multi, evalset), paths):
        ds.save_to_disk(str(path))
    return paths
