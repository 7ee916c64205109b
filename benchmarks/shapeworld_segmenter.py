"""How well does the mini SAM2 segment held-out ShapeWorld shapes from their ground-truth prompts?

Mean mask IoU over every shape of the validation scenes, per prompting mode (box + two inscribed
points, box only, points only), through :class:`segzero.segmenter.Segmenter` as the pipeline runs it
(:func:`shapeworld_probes.evaluate_segmenter`):

    python benchmarks/shapeworld_segmenter.py                      # the shipped segmenter
    python benchmarks/shapeworld_segmenter.py OUT/segmenter --n 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from shapeworld_probes import evaluate_segmenter

    from segzero.shapeworld.shipped import SHIPPED_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("segmenter", nargs="?", type=Path, default=SHIPPED_MODELS / "segmenter")
    parser.add_argument("--n", type=int, default=60, help="validation scenes (every shape of each is scored)")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args()
    iou = evaluate_segmenter(args.segmenter, n_scenes=args.n, split=args.split)
    print(json.dumps({"segmenter": str(args.segmenter), "scenes": args.n, "split": args.split, "iou": iou}))


if __name__ == "__main__":
    main()
