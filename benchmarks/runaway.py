"""``--stop-runaway`` on and off, side by side in one run: the same requests, the same models.

The tiny random reasoner writes newlines until its token budget is spent: every request runs away, which is
the case the option is for. Each setting runs the requests through the whole pipeline (``segment_batch``)
``--repeats`` times, alternating, and the table gives the median seconds per run, the completion length and
the statuses; the ratio is off / on::

    python benchmarks/runaway.py                       # tiny models built here, on the CPU
    python benchmarks/runaway.py --max-new-tokens 1024 --requests 8 --batch-size 8

``--reasoner DIR --segmenter DIR`` measures other models (e.g. the shipped ShapeWorld ones, which seldom run
away: the two settings then cost the same).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reasoner", help="reasoner folder (default: a tiny random one built here)")
    parser.add_argument("--segmenter", help="segmenter folder (default: the tiny one built with it)")
    parser.add_argument("--frame", type=int, default=None, help="reasoner frame (default: the model's)")
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from segzero.pipeline import ReasoningSegmenter

    with tempfile.TemporaryDirectory() as tmp:
        reasoner, segmenter, frame = args.reasoner, args.segmenter, args.frame
        if reasoner is None:
            from segzero.tiny import make_tiny

            models = make_tiny(Path(tmp))
            reasoner, segmenter, frame = str(models.reasoner), str(models.segmenter), frame or models.frame
        rng = np.random.default_rng(0)
        images = [(rng.random((120, 160, 3)) * 255).astype(np.uint8) for _ in range(args.requests)]
        requests = [f"the object number {i}" for i in range(args.requests)]
        pipes = {
            stop: ReasoningSegmenter.from_pretrained(
                reasoner,
                segmenter,
                frame=frame,
                device=args.device,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                stop_runaway=stop,
            )  # fmt: skip
            for stop in (False, True)
        }
        pipes[False].segment_batch(images[:1], requests[:1], max_new_tokens=4)  # warm-up
        seconds: dict[bool, list[float]] = {False: [], True: []}
        last = {}
        for _ in range(args.repeats):
            for stop, pipe in pipes.items():
                start = time.perf_counter()
                last[stop] = pipe.segment_batch(images, requests)
                seconds[stop].append(time.perf_counter() - start)
    print(f"{args.requests} requests, batch {args.batch_size}, --max-new-tokens {args.max_new_tokens}, "
          f"median of {args.repeats} runs ({args.device})")  # fmt: skip
    print(f"{'setting':<18}{'s / run':>9}{'chars / completion':>20}  statuses")
    for stop in (False, True):
        statuses = collections.Counter(r.status.value for r in last[stop])
        chars = statistics.mean(len(r.completion) for r in last[stop])
        name = "--stop-runaway" if stop else "off (default)"
        print(f"{name:<18}{statistics.median(seconds[stop]):>9.2f}{chars:>20.0f}  {dict(statuses)}")
    print(f"speed-up (off / on): {statistics.median(seconds[False]) / statistics.median(seconds[True]):.1f}x")


if __name__ == "__main__":
    sys.exit(main())
