"""Does the ShapeWorld reasoner pick the shape the request means? Per request template, on validation scenes.

Greedy answers of each reasoner folder; each completion's choice (the shape named after "the request
means") is judged by box against the target (:func:`shapeworld_probes.choice_outcome`):
``right``, ``wrong`` (the listing boxed the target but another shape was chosen), ``unlisted`` (the
listing missed the target) or ``none`` (no choice to read). It separates the language model's choice
from the listing that ``benchmarks/shapeworld_colour.py`` measures.

    python benchmarks/shapeworld_choice.py src/segzero/shapeworld/models/reasoner-warmup --n 200

What it gave is in docs/shapeworld.md (the shipped warm-up, per template) and docs/shapeworld-log.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict


def main() -> None:
    from shapeworld_probes import CHOICE_OUTCOMES, choice_outcome, generate_answers

    from segzero.hub import read_model_meta
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import FAMILIES, make_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reasoners", nargs="+", help="reasoner folders (with segzero.json)")
    parser.add_argument("--family", choices=FAMILIES, default="referring")
    parser.add_argument("--n", type=int, default=200, help="validation scenes")
    args = parser.parse_args()

    samples = list(make_split("val", args.n, args.family))
    for folder in args.reasoners:
        frame = read_model_meta(folder)["reasoner_frame"]
        reasoner = Reasoner.from_pretrained(folder, device="cpu", dtype="float32", frame=frame)
        per_template: dict[str, Counter] = defaultdict(Counter)
        for completion, sample in zip(generate_answers(reasoner, samples), samples):
            per_template[sample.extra["template"]][choice_outcome(completion, sample, frame)] += 1
        total = sum(per_template.values(), Counter())
        table = {t: {o: c[o] for o in CHOICE_OUTCOMES} for t, c in sorted(per_template.items())}
        print(
            json.dumps(
                {
                    "reasoner": folder,
                    "family": args.family,
                    "total": {o: total[o] for o in CHOICE_OUTCOMES},
                    "templates": table,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
