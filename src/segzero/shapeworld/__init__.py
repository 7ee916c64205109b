"""ShapeWorld: a miniature procedural world for demonstrating and testing Seg-Zero offline.

Scenes of a few coloured shapes, small enough (112 px by default) that a tiny reasoner and a tiny
segmenter can be trained on a CPU in minutes, with exact masks and requests that name exactly one
shape. Two request families mirror the real benchmarks: ``"referring"`` (RefCOCOg-like) and
``"reasoning"`` (ReasonSeg-like)::

    from segzero.shapeworld import make_sample, make_split
    sample = make_sample(7, "reasoning")          # a segzero.data.records.Sample
    train = list(make_split("train", 100, "referring"))

The mini models that ship in the package are in :mod:`segzero.shapeworld.shipped`; they are trained by
:mod:`segzero.shapeworld.training` (one module per stage) and shown by :mod:`segzero.shapeworld.demo`.
"""

from segzero.shapeworld.generator import (
    FAMILIES,
    KINDS,
    PALETTE,
    SPLIT_SEEDS,
    TEMPLATES,
    Request,
    Scene,
    Shape,
    describe,
    export_reasonseg_folder,
    generate_scene,
    make_sample,
    make_split,
    mask_to_polygons,
)

__all__ = [
    "FAMILIES",
    "KINDS",
    "PALETTE",
    "SPLIT_SEEDS",
    "TEMPLATES",
    "Request",
    "Scene",
    "Shape",
    "describe",
    "export_reasonseg_folder",
    "generate_scene",
    "make_sample",
    "make_split",
    "mask_to_polygons",
]
