"""Batched pipeline vs a naive one-request-at-a-time loop, measured side by side in one run.

Naive = what a simple script does: for each request, one ``generate`` and one SAM2 image
encoding. Batched = ``ReasoningSegmenter.segment_batch``: one ``generate`` per batch and one
encoding per distinct image. Random-weight reasoners seldom write a parseable answer, so SAM2
would rarely run end to end; the segmenter stage is therefore also timed on its own with
answer-shaped prompts (one box + two points per request).

    python benchmarks/pipeline.py                      # tiny and mid-size configs on this machine
    python benchmarks/pipeline.py --configs mid --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segzero.frames import Frame, ObjectPrompt
from segzero.pipeline import ReasoningSegmenter
from segzero.tiny import build_reasoner, build_segmenter

#: Model sizes, all with random weights: "tiny" is the test models; "mid" is big enough that
#: batching matters, still quick to build on a CPU; "3b" has the released 3B reasoner's shapes.
CONFIGS = {
    "tiny": dict(
        frame=224, reasoner=dict(hidden_size=64, num_layers=2), segmenter=dict(image_size=64)
    ),
    "mid": dict(
        frame=448,
        reasoner=dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4, vision_depth=4,
                      vision_hidden=256, vision_heads=4),
        segmenter=dict(image_size=512, hidden_size=128, stage_dims=(48, 96, 192, 384), stage_heads=(1, 2, 4, 8)),
    ),
    # Qwen2.5-VL-3B's shapes (text 2048 x 36 layers, vision 1280 x 32 blocks) with the tiny tokenizer,
    # and a SAM2 at 1024 px: GPU only.
    "3b": dict(
        frame=840,
        reasoner=dict(hidden_size=2048, intermediate_size=11008, num_layers=36, num_heads=16, num_kv_heads=2,
                      vision_depth=32, vision_hidden=1280, vision_heads=16),
        segmenter=dict(image_size=1024, hidden_size=256, stage_dims=(144, 288, 576, 1152), stage_heads=(2, 4, 8, 16)),
    ),
}


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((360 + 20 * i, 480, 3)) * 255).astype(np.uint8)) for i in range(n)]


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_config(name: str, args) -> dict:
    cfg = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        reasoner = build_reasoner(Path(tmp) / "reasoner", frame=cfg["frame"], **cfg["reasoner"])
        segmenter = build_segmenter(Path(tmp) / "segmenter", **cfg["segmenter"])
        pipe = ReasoningSegmenter.from_pretrained(
            str(reasoner), str(segmenter), device=args.device, dtype=args.dtype, frame=cfg["frame"],
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        )
    images = _images(args.images)
    pairs = [(img, f"the object number {j} in picture {i}") for i, img in enumerate(images) for j in range(args.per_image)]
    n = len(pairs)
    gen = {"min_new_tokens": args.max_new_tokens}  # same work for both: no early stop on EOS

    def batched():
        pipe.segment_batch([p[0] for p in pairs], [p[1] for p in pairs], **gen)

    def naive():
        for img, req in pairs:
            pipe.segment(img.copy(), req, **gen)  # a copy: nothing cached between requests

    def answer_shaped(w: int, h: int) -> ObjectPrompt:
        return ObjectPrompt(
            box=(w * 0.2, h * 0.2, w * 0.6, h * 0.7),
            points=((w * 0.4, h * 0.4), (w * 0.45, h * 0.5)),
            frame=Frame.image((w, h)),
        )

    prompts = [[answer_shaped(*img.size)] for img, _ in pairs]

    def seg_batched():
        pipe.segmenter.segment_many([p[0] for p in pairs], prompts)

    def seg_naive():
        for (img, _), objs in zip(pairs, prompts):
            pipe.segmenter.segment_many([img.copy()], [objs])

    batched(), naive()  # warm-up
    seg_batched(), seg_naive()
    t = {k: _timed(f, args.repeats) for k, f in
         {"batched": batched, "naive": naive, "seg_batched": seg_batched, "seg_naive": seg_naive}.items()}
    return {
        "config": name,
        "requests": n,
        "distinct_images": len(images),
        "pipeline_batched_rps": n / t["batched"],
        "pipeline_naive_rps": n / t["naive"],
        "pipeline_speedup": t["naive"] / t["batched"],
        "segmenter_batched_rps": n / t["seg_batched"],
        "segmenter_naive_rps": n / t["seg_naive"],
        "segmenter_speedup": t["seg_naive"] / t["seg_batched"],
        "device": str(pipe.reasoner.device),
        "dtype": str(pipe.reasoner.model.dtype),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tiny,mid", help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--images", type=int, default=4, help="distinct images")
    parser.add_argument("--per-image", type=int, default=4, help="requests per image")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = [run_config(name, args) for name in args.configs.split(",")]
    header = f"{'config':<6} {'device':<7} {'reqs':>4} {'batched r/s':>12} {'naive r/s':>10} {'speedup':>8}   {'SAM2 batched':>12} {'SAM2 naive':>10} {'speedup':>8}"
    print(header)
    for r in rows:
        print(
            f"{r['config']:<6} {r['device']:<7} {r['requests']:>4} {r['pipeline_batched_rps']:>12.2f} "
            f"{r['pipeline_naive_rps']:>10.2f} {r['pipeline_speedup']:>7.2f}x   {r['segmenter_batched_rps']:>12.2f} "
            f"{r['segmenter_naive_rps']:>10.2f} {r['segmenter_speedup']:>7.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
