"""Fuzz the answer parser and every registered reward with generated completions (seeded).

Each completion goes through :func:`segzero.answer.parse_answer`, every reward in
:data:`segzero.rewards.REWARDS` (so reference twins registered there are covered too), against a
ground truth drawn from a fixed set, and ``mask_iou`` (with a stand-in segmenter that fills each
predicted box: no model). The completions are what a degenerate model or an attacker writes:
random Unicode, answer-shaped token soup, answers whose numbers are huge integers, NaN, Infinity,
hex or strings, deep nesting, long repetitions ("000...", the same sentence, the same tags) and a
few of up to a megabyte.

Prints the exceptions raised (must be 0), the values that are not finite floats in the reward's
declared range (must be 0), and the time per call (p50, p99, max) for each function and overall.
Exits 1 if anything raised or left its range.

    python benchmarks/fuzz.py                          # 100,000 completions, seed 0
    python benchmarks/fuzz.py --completions 2000 --seed 1 --json fuzz.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial

import numpy as np

from segzero.answer import ParsedAnswer, ParseStatus, parse_answer
from segzero.defaults import REASONER_FRAME
from segzero.rewards import REWARD_RANGES, REWARDS, GroundTruth, MaskIoUReward

#: Completions at least this long count as large in the report.
LARGE = 100_000

GROUND_TRUTHS = (
    GroundTruth(boxes=[(100, 100, 199, 199)], points=[((120, 130), (180, 170))]),
    GroundTruth(
        boxes=[(10, 100, 200, 210), (225, 296, 706, 786), (0, 0, 840, 840)],
        points=[((30, 110),), ((302, 410),), ((420, 420),)],
    ),
    GroundTruth(boxes=[(0, 0, 840, 840)]),
    GroundTruth(),
)

PIECES = (
    "<think>", "</think>", "<answer>", "</answer>", "{", "}", "[", "]", "(", ")", '"', "'", ":", ",", ".",
    " ", "\n", "\\", '"bbox"', "'bbox'", '"bbox_2d"', '"points_1"', '"points_2"', '"point_2d"', "'points_1'",
    "NaN", "Infinity", "-Infinity", "1e999", "-1e400", "12", "840", "-3.5", "0", "true", "null", "None",
    "0x" + "f" * 40, "1" + "0" * 400, "9" * 5000, "\u0000", "\ud800", "\u202e", "é", "🙂",
)  # fmt: skip


def hostile_number(rng: random.Random) -> str:
    """A number, or something standing where a number should be, as the answer's text has it."""
    return rng.choice(
        (
            lambda: str(rng.randint(-50, 900)),
            lambda: repr(rng.uniform(-1e3, 1e3)),
            lambda: "1" + "0" * rng.choice((18, 308, 309, 400, 4299, 4301, 20_000)),
            lambda: "-" + "9" * rng.randint(1, 600),
            lambda: rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1e-400", "-0.0", "1E5")),
            lambda: "0x" + "f" * rng.choice((4, 300, 5000)),
            lambda: rng.choice(("true", "null", "None", '"12"', "'7'", "[1, 2]", "{}", "1_000", "0o17")),
        )
    )()


def answer(rng: random.Random) -> str:
    """A Seg-Zero or multi-object answer whose values and keys are drawn to break a reader, maybe cut."""

    def numbers(n: int) -> str:
        return "[" + ", ".join(hostile_number(rng) for _ in range(n + rng.choice((0, 0, 0, -1, 1)))) + "]"

    if rng.random() < 0.5:
        keys = [("bbox", 4), ("points_1", 2), ("points_2", 2)]
        if rng.random() < 0.4:  # missing, repeated or odd keys
            keys = rng.choices([*keys, ("bbox_2d", 4), ("point", 2), ("BBox", 4)], k=rng.randint(0, 5))
        body = "{" + ", ".join(f'"{k}": {numbers(n)}' for k, n in keys) + "}"
    else:
        items = [f'{{"bbox_2d": {numbers(4)}, "point_2d": {numbers(2)}}}' for _ in range(rng.randint(0, 6))]
        body = "[" + ", ".join(items) + "]"
    if rng.random() < 0.3:
        body = body.replace('"', "'")
    text = f"<think>{noise(rng, 40)}</think><answer>{body}</answer>"
    for _ in range(rng.choice((0, 0, 1, 3))):  # cut, drop or insert a character
        i = rng.randrange(len(text) + 1)
        text = rng.choice((text[:i], text[:i] + text[i + 1 :], text[:i] + rng.choice(PIECES) + text[i:]))
    return text


def noise(rng: random.Random, mean_length: int = 60) -> str:
    """Random code points from the whole of Unicode, lone surrogates included."""
    n = int(rng.expovariate(1 / mean_length))
    return "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x110000)))) for _ in range(n))


def soup(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(int(rng.expovariate(1 / 40))))


def nested(rng: random.Random) -> str:
    depth = rng.choices((17, 100, 1000, 5000, 100_000), (3, 3, 2, 1, 1))[0]
    opener, closer = rng.choice((("[", "]"), ('{"bbox": ', "}"), ("(", ")"), ("[{", "}]"), ("-", "")))
    inner = opener * depth + hostile_number(rng) + closer * depth * rng.randint(0, 1)
    return rng.choice(
        (inner, f"<answer>{inner}</answer>", f"<think>t</think><answer>{{'bbox': {inner}}}</answer>")
    )


def repeated(rng: random.Random) -> str:
    """What a model stuck in a loop writes."""
    n = rng.choices((10, 1000, 10_000), (5, 4, 1))[0]
    return rng.choice(
        (
            lambda: '<answer>{"bbox":[1' + "0" * n + ",0,10,10]}</answer>",
            lambda: "<think>" + "</think><answer></answer>x" * n,
            lambda: "<think>" + "The cup is on the left. " * n + "</think><answer>{}</answer>",
            lambda: "<answer>[" + '{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}, ' * n + "]</answer>",
            lambda: "<think>" + "<think>" * n + "</answer>",
            lambda: "{" * n + "'" + "}" * n,
            lambda: '{"' + "\\" * n + '"}',
        )
    )()


def large(rng: random.Random) -> str:
    """Up to a megabyte of one of the other kinds, repeated."""
    piece = rng.choice((soup, answer, repeated, nested))(rng) or "x"
    size = rng.choice((100_000, 1_000_000))
    return (piece * (size // len(piece) + 1))[:size]


#: Share of each kind of completion. Deep nesting and long repetitions are rarer than their
#: importance because each costs up to a few hundred milliseconds to read (the parser scans at most
#: 20,000 characters at a bounded depth).
KINDS: dict[str, tuple[float, Callable[[random.Random], str]]] = {
    "noise": (0.25, noise),
    "soup": (0.27, soup),
    "answer": (0.35, answer),
    "nested": (0.03, nested),
    "repeated": (0.0995, repeated),
    "large": (0.0005, large),
}


def completions(n: int, seed: int):
    """``n`` completions ``(kind, text)``, the same for the same seed."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        yield kind, KINDS[kind][1](rng)


class BoxSegmenter:
    """Stands in for SAM2 in ``mask_iou``: each object's mask is its box. No model."""

    def segment_many(self, images, prompts, mode="both"):
        outs = []
        for image, objects in zip(images, prompts):
            w, h = image.size
            mask = np.zeros((h, w), dtype=bool)
            for obj in objects:
                if obj.box is not None:
                    x1, y1, x2, y2 = (int(v) for v in obj.box)
                    mask[y1 : y2 + 1, x1 : x2 + 1] = True
            outs.append(type("Out", (), {"mask": mask})())
        return outs


def parse_problem(parsed: object) -> str | None:
    """Why a parse result breaks the parser's promise, or None."""
    if not isinstance(parsed, ParsedAnswer) or not isinstance(parsed.status, ParseStatus):
        return f"returned {type(parsed).__name__}"
    for obj in parsed.objects:
        values = [*(obj.box or ()), *(v for p in obj.points for v in p)]
        if not all(isinstance(v, float | int) and 0 <= v <= REASONER_FRAME for v in values):
            return f"coordinates outside [0, {REASONER_FRAME}]: {obj}"
    return None


def value_problem(value: object, low: float, high: float) -> str | None:
    if not isinstance(value, float) or not math.isfinite(value) or not low <= value <= high:
        return f"{value!r} outside [{low}, {high}]"
    return None


GOOD = (
    '<think>the cup</think><answer>{"bbox": [100, 100, 199, 199], "points_1": [120, 130], '
    '"points_2": [180, 170]}</answer>'
)


class Tally:
    """Times, exceptions and out-of-range values of every call, by function."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.exceptions: Counter = Counter()
        self.bad_values: Counter = Counter()
        self.examples: dict[tuple[str, str], str] = {}
        self.slowest_large: tuple[float, str, int] = (0.0, "", 0)  # seconds, function, length
        self.kinds: Counter = Counter()

    def call(
        self, name: str, text: str, fn: Callable[[], object], check: Callable[[object], str | None]
    ) -> None:
        """Time ``fn()`` (a call on ``text``) and record what it raised or what ``check`` found wrong."""
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - counting every escape is the point
            seconds = time.perf_counter() - started
            key = (name, type(exc).__name__)
            self.exceptions[key] += 1
            self.examples.setdefault(key, f"{text[:120]!r} ({len(text):,} chars): {exc!s:.200}")
        else:
            seconds = time.perf_counter() - started
            problem = check(result)
            if problem:
                self.bad_values[name] += 1
                self.examples.setdefault((name, "value"), f"{text[:120]!r}: {problem}")
        self.seconds[name].append(seconds)
        if len(text) >= LARGE and seconds > self.slowest_large[0]:
            self.slowest_large = (seconds, name, len(text))


def run(n: int, seed: int) -> Tally:
    from PIL import Image
    from pycocotools import mask as mask_utils

    tally = Tally()
    image = Image.new("RGB", (64, 48))
    target = np.zeros((48, 64), dtype=bool)
    target[10:30, 5:40] = True
    encoded = mask_utils.encode(np.asfortranarray(target.astype(np.uint8)))
    rle = {"size": [48, 64], "counts": encoded["counts"].decode("ascii")}
    mask_iou = MaskIoUReward(BoxSegmenter())
    for fn in REWARDS.values():  # imports (scipy for the matching) are not the rewards' time
        fn(GOOD, GROUND_TRUTHS[0])
    mask_iou.score([GOOD], [image], [rle])
    in_range = {
        name: partial(value_problem, low=low, high=high) for name, (low, high) in REWARD_RANGES.items()
    }
    for i, (kind, text) in enumerate(completions(n, seed)):
        tally.kinds[kind] += 1
        gt = GROUND_TRUTHS[i % len(GROUND_TRUTHS)]
        tally.call("parse_answer", text, partial(parse_answer, text), parse_problem)
        for name, fn in REWARDS.items():
            tally.call(name, text, partial(fn, text, gt), in_range[name])
        tally.call("mask_iou", text, partial(first_score, mask_iou, text, image, rle), in_range["mask_iou"])
    return tally


def first_score(reward: MaskIoUReward, text: str, image: object, rle: dict) -> object:
    return reward.score([text], [image], [rle])[0]


def report(tally: Tally, n: int, seed: int, wall_s: float) -> dict:
    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    header = (
        f"{'function':<26} {'calls':>8} {'raised':>7} {'out of range':>12} "
        f"{'p50 us':>8} {'p99 us':>8} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = {}
    for name, seconds in tally.seconds.items():
        raised = sum(c for (fn, _), c in tally.exceptions.items() if fn == name)
        row = {
            "calls": len(seconds),
            "raised": raised,
            "out_of_range": tally.bad_values[name],
            "p50_us": pct(seconds, 50) * 1e6,
            "p99_us": pct(seconds, 99) * 1e6,
            "max_ms": max(seconds) * 1e3,
        }
        rows[name] = row
        print(
            f"{name:<26} {row['calls']:>8} {raised:>7} {row['out_of_range']:>12} {row['p50_us']:>8.1f} "
            f"{row['p99_us']:>8.1f} {row['max_ms']:>8.1f}"
        )
    every = [s for seconds in tally.seconds.values() for s in seconds]
    exceptions = sum(tally.exceptions.values())
    out_of_range = sum(tally.bad_values.values())
    slowest, slowest_name, slowest_len = tally.slowest_large
    print(
        f"\n{n:,} completions (seed {seed}; {dict(tally.kinds)}), {len(every):,} calls in {wall_s:.0f} s\n"
        f"exceptions: {exceptions}\nout-of-range values: {out_of_range}\n"
        f"time per call: p50 {pct(every, 50) * 1e6:.1f} us, p99 {pct(every, 99) * 1e6:.1f} us, "
        f"max {max(every) * 1e3:.1f} ms\n"
        f"slowest call on a completion of {LARGE:,} characters or more: {slowest * 1e3:.1f} ms "
        f"({slowest_name}, {slowest_len:,} characters)"
    )
    for (name, what), example in tally.examples.items():
        print(f"  {name} {what}: {example}")
    return {
        "completions": n,
        "seed": seed,
        "kinds": dict(tally.kinds),
        "calls": len(every),
        "wall_s": wall_s,
        "exceptions": exceptions,
        "out_of_range": out_of_range,
        "p50_us": pct(every, 50) * 1e6,
        "p99_us": pct(every, 99) * 1e6,
        "max_ms": max(every) * 1e3,
        "slowest_large_ms": slowest * 1e3,
        "slowest_large_chars": slowest_len,
        "functions": rows,
        "examples": {f"{n} {w}": e for (n, w), e in tally.examples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--completions", type=int, default=100_000, help="How many completions to generate.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generator.")
    parser.add_argument("--json", help="Also write the figures to this JSON file.")
    args = parser.parse_args()
    started = time.perf_counter()
    tally = run(args.completions, args.seed)
    figures = report(tally, args.completions, args.seed, time.perf_counter() - started)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    sys.exit(1 if figures["exceptions"] or figures["out_of_range"] else 0)


if __name__ == "__main__":
    main()
